package istio

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"testing"
	"time"
)

func cert(t *testing.T, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, ca bool, dns []string, uris []*url.URL) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: ca, BasicConstraintsValid: true,
		DNSNames: dns, URIs: uris, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func TestVerifyIstiod(t *testing.T) {
	root, rootKey := cert(t, "mesh root", nil, nil, true, nil, nil)
	other, otherKey := cert(t, "another root", nil, nil, true, nil, nil)
	rootPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})
	conf, err := VerifyIstiod(rootPEM, "istio-system")
	if err != nil {
		t.Fatal(err)
	}
	spiffe, _ := url.Parse("spiffe://cluster.local/ns/shop/sa/web")
	istiod, _ := cert(t, "istiod", root, rootKey, false, []string{"istiod-1-30.istio-system.svc", "istiod.istio-system.svc"}, nil)
	workload, _ := cert(t, "web", root, rootKey, false, nil, []*url.URL{spiffe})
	impostor, _ := cert(t, "istiod", other, otherKey, false, []string{"istiod.istio-system.svc"}, nil)
	otherNS, _ := cert(t, "istiod", root, rootKey, false, []string{"istiod.other.svc"}, nil)
	lookalike, _ := cert(t, "istiod", root, rootKey, false, []string{"istiodx.istio-system.svc", "istiod-evil.example.com", "istiod.istio-system.svc.evil"}, nil)
	clientOnly, _ := cert(t, "istiod", root, rootKey, false, []string{"istiod.istio-system.svc"}, nil)
	clientOnly = reissue(t, clientOnly, root, rootKey, x509.ExtKeyUsageClientAuth)
	for name, c := range map[string]*x509.Certificate{"istiod": istiod, "a mesh workload": workload, "another CA": impostor, "another Istio namespace": otherNS,
		"a name that only starts with istiod": lookalike, "a certificate not for serving": clientOnly} {
		err := conf.VerifyPeerCertificate([][]byte{c.Raw}, nil)
		if (name == "istiod") != (err == nil) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := VerifyIstiod([]byte("not a certificate"), "istio-system"); err == nil {
		t.Error("an empty root was accepted")
	}
}

// reissue signs c's template again, for usage only.
func reissue(t *testing.T, c *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, usage x509.ExtKeyUsage) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := *c
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := x509.ParseCertificate(der)
	return out
}

// Package istiotest serves what one istiod answers the plugin's debug clients, for unit tests that
// run steps on fake clusters: xDS debug requests (config_dump) over TLS, as istiod does on 15012.
package istiotest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
	"istio.io/istio/pkg/model"
)

// RecordedGatewayDump is a gateway's LDS and RDS config dump as istiod 1.30 served it on the test bed.
func RecordedGatewayDump(t testing.TB) []byte {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "testdata", "configdump-gateway-1.30.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// XDS serves istiod's xDS debug type on a local TLS listener (HTTP/2, as gRPC needs), with a serving
// certificate of RootPEM's mesh root naming istiod.istio-system.svc, as istiod's own: a config_dump
// request for proxy ID is answered with dump(ID), or istiod's "not connected" text when dump returns
// nil. It returns the address; the server stops when the test ends.
func XDS(t testing.TB, dump func(proxyID string) []byte) string {
	t.Helper()
	g := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(g, &ads{dump: dump})
	s := httptest.NewUnstartedServer(g)
	s.EnableHTTP2 = true
	s.TLS = &tls.Config{Certificates: []tls.Certificate{serving(t)}}
	s.StartTLS()
	t.Cleanup(func() { g.Stop(); s.Close() })
	return s.Listener.Addr().String()
}

type ads struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	dump func(string) []byte
}

func (a *ads) StreamAggregatedResources(s discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	for {
		req, err := s.Recv()
		if err != nil {
			return nil
		}
		resp := &discovery.DiscoveryResponse{TypeUrl: req.TypeUrl}
		for _, name := range req.ResourceNames {
			q, ok := strings.CutPrefix(name, "config_dump?")
			if !strings.HasPrefix(req.TypeUrl, model.DebugType) || !ok {
				continue
			}
			id := ""
			for _, kv := range strings.Split(q, "&") {
				if v, ok := strings.CutPrefix(kv, "proxyID="); ok {
					id = v
				}
			}
			body := a.dump(id)
			if body == nil {
				body = []byte(fmt.Sprintf("proxy not connected to this Pilot instance: %s", id))
			}
			resp.Resources = append(resp.Resources, &anypb.Any{TypeUrl: req.TypeUrl, Value: body})
		}
		if err := s.Send(resp); err != nil {
			return nil
		}
	}
}

var (
	caOnce sync.Once
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caErr  error
)

// RootPEM is the mesh root the test istiods' serving certificates chain to: what the live bed puts in
// the istio-ca-root-cert ConfigMap, as istiod does.
func RootPEM(t testing.TB) []byte {
	t.Helper()
	ca(t)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw})
}

func ca(t testing.TB) {
	caOnce.Do(func() {
		caKey, caErr = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if caErr != nil {
			return
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"cluster.local"}},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
		var der []byte
		if der, caErr = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey); caErr == nil {
			caCert, caErr = x509.ParseCertificate(der)
		}
	})
	if caErr != nil {
		t.Fatal(caErr)
	}
}

// serving is an istiod serving certificate of the mesh root, as Istio's CA issues one (ServerAuth).
func serving(t testing.TB) tls.Certificate {
	t.Helper()
	ca(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"istiod.istio-system.svc"}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

package mesh

import (
	"context"
	"net"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// tokenClient counts TokenRequests, answering each with a token.
func tokenClient() (*kube.Clients, *int) {
	k := fake.NewClientset()
	n := 0
	k.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "token" {
			return false, nil, nil
		}
		n++
		return true, &authv1.TokenRequest{Status: authv1.TokenRequestStatus{Token: "t"}}, nil
	})
	return &kube.Clients{Kube: k}, &n
}

func TestIstiodTokenMintedOncePerRun(t *testing.T) {
	c, n := tokenClient()
	i := NewIstiod(c, ReadOptions{IstioNamespace: "istio-system"})
	defer i.Close()
	for range 3 {
		if tok, err := i.Token(context.Background()); err != nil || tok != "t" {
			t.Fatalf("Token = %q, %v", tok, err)
		}
	}
	if *n != 1 {
		t.Fatalf("%d token requests for three asks, want 1", *n)
	}
	i.minted = time.Now().Add(-tokenLife - time.Second)
	if _, err := i.Token(context.Background()); err != nil || *n != 2 {
		t.Fatalf("an expired token is not minted again: %d requests, %v", *n, err)
	}
}

func TestIstiodAsksOnlyRunningPods(t *testing.T) {
	c, n := tokenClient()
	i := NewIstiod(c, ReadOptions{IstioNamespace: "istio-system"})
	defer i.Close()
	gone := metav1.Now()
	pods := []corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: "pending"}, Status: corev1.PodStatus{Phase: corev1.PodPending}},
		{ObjectMeta: metav1.ObjectMeta{Name: "deleting", DeletionTimestamp: &gone}, Status: corev1.PodStatus{Phase: corev1.PodRunning}},
	}
	if got := i.Syncz(context.Background(), pods); len(got) != 0 {
		t.Fatalf("Syncz asked pods that cannot answer: %+v", got)
	}
	if _, err := i.Routing(context.Background(), pods, "ns", "p"); err == nil {
		t.Fatal("Routing with no running istiod did not fail")
	}
	if _, err := i.Metrics(context.Background(), pods, "1-31"); err == nil {
		t.Fatal("Metrics with no running istiod did not fail")
	}
	if *n != 0 {
		t.Fatalf("%d token requests with nothing to ask", *n)
	}
}

// An --xds-address that does not answer gives one entry naming the address and its error; plaintext
// needs no token.
func TestIstiodXDSAddressUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, n := tokenClient()
	i := NewIstiod(c, ReadOptions{IstioNamespace: "istio-system", XDS: XDSOptions{Address: addr, Plaintext: true, Timeout: 2 * time.Second}})
	defer i.Close()
	got := i.Syncz(context.Background(), nil)
	if len(got) != 1 || got[0].Pod != addr || got[0].Err == nil {
		t.Fatalf("Syncz = %+v, want one failed entry for %s", got, addr)
	}
	if *n != 0 {
		t.Fatalf("plaintext --xds-address asked for %d tokens", *n)
	}
}

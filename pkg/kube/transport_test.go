package kube

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Once the fence closes no write leaves the process, whichever client sends it; reads, dry runs,
// access reviews, tokens and the lock's own renewals still go. Calls that are not watches get a
// deadline; watches do not.
func TestGuardFencesWritesAndBoundsCalls(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.RequestURI())
		if strings.Contains(r.URL.Path, "slow") {
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
		}
		w.WriteHeader(200)
	}))
	defer srv.Close()
	fence := &Fence{}
	c := &http.Client{Transport: &guard{next: http.DefaultTransport, fence: fence, timeout: 200 * time.Millisecond}}
	do := func(ctx context.Context, method, path string) error {
		req, _ := http.NewRequestWithContext(ctx, method, srv.URL+path, nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	ctx := context.Background()
	lost := errors.New("lost the lock")
	fence.Guard(func() error { return lost })
	if err := do(ctx, http.MethodPatch, "/api/v1/namespaces/shop"); err == nil || !errors.Is(err, lost) {
		t.Errorf("a write past the fence: %v", err)
	}
	if err := do(ctx, http.MethodDelete, "/api/v1/namespaces/shop"); err == nil {
		t.Errorf("a delete past the fence was sent")
	}
	for _, ok := range []struct{ method, path string }{
		{http.MethodGet, "/api/v1/namespaces/shop"},
		{http.MethodPatch, "/api/v1/namespaces/shop?dryRun=All"},
		{http.MethodPost, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"},
		{http.MethodPost, "/api/v1/namespaces/istio-system/serviceaccounts/default/token"},
	} {
		if err := do(ctx, ok.method, ok.path); err != nil {
			t.Errorf("%s %s refused: %v", ok.method, ok.path, err)
		}
	}
	if err := do(Unfenced(ctx), http.MethodPut, "/apis/coordination.k8s.io/v1/namespaces/istio-system/leases/istio-upgrade-lock"); err != nil {
		t.Errorf("the lock's own renewal refused: %v", err)
	}
	if n := len(got); n != 5 {
		t.Errorf("the server saw %d requests, want 5: %v", n, got)
	}
	fence.Guard(nil)
	start := time.Now()
	if err := do(ctx, http.MethodGet, "/api/v1/slow"); err == nil || time.Since(start) > time.Second {
		t.Errorf("a hung call must end at the request timeout: %v after %s", err, time.Since(start))
	}
	start = time.Now()
	if err := do(ctx, http.MethodGet, "/api/v1/slow?watch=true"); err != nil || time.Since(start) < time.Second {
		t.Errorf("a watch must not be cut by the request timeout: %v after %s", err, time.Since(start))
	}
}

package traffic

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// The loop counts 2xx, failures by cause with the bed's hop cause, and the longest failing run.
func TestRunCountsFailures(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "bookinfo.example.com" {
			http.Error(w, "wrong host", http.StatusNotFound)
			return
		}
		if i := n.Add(1); i > 10 && i <= 13 { // three in a row fail
			w.Header().Set("X-Testbed-Cause", "refused")
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
	}))
	defer srv.Close()
	s := Run(context.Background(), Config{URL: srv.URL + "/productpage", Host: "bookinfo.example.com", RPS: 200, Max: 40})
	if s.Sent != 40 || s.OK != 37 || s.Failed != 3 || s.Causes["503/refused"] != 3 || s.LongestFailureRun != 3 {
		t.Errorf("summary %+v", s)
	}
	srv.Close()
	if s := Run(context.Background(), Config{URL: srv.URL, RPS: 100, Max: 5}); s.Failed != 5 || s.Causes["refused"] != 5 {
		t.Errorf("a closed server: %+v", s)
	}
}

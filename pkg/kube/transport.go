package kube

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// DefaultRequestTimeout bounds every call that is not a watch, a port-forward or a stream when
// kubectl's --request-timeout is not given: a hung apiserver must not hang a step.
const DefaultRequestTimeout = 60 * time.Second

// Fence refuses writes once the run no longer holds the cluster's lock: a process frozen past its
// lease (a closed laptop lid, a paused terminal) that wakes while another operator holds the lock
// must not write. Every client of a command shares it, so no write path can miss it.
type Fence struct {
	mu    sync.Mutex
	check func() error
}

// Guard makes check the question asked before every write (nil: none). Fake clients send no HTTP
// and carry no fence: the runner's own checks (Stopping) still stop their steps.
func (f *Fence) Guard(check func() error) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.check = check
}

// Err is why writes are refused now (nil: allowed).
func (f *Fence) Err() error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	check := f.check
	f.mu.Unlock()
	if check == nil {
		return nil
	}
	return check()
}

type unfencedKey struct{}

// Unfenced marks a context whose writes pass the fence: the lock's own renewals and release.
func Unfenced(ctx context.Context) context.Context {
	return context.WithValue(ctx, unfencedKey{}, true)
}

// FencedError is a write the fence refused.
type FencedError struct{ Err error }

func (e *FencedError) Error() string { return "write refused: " + e.Err.Error() }
func (e *FencedError) Unwrap() error { return e.Err }

// guard is the transport every client of a command sends through: it refuses writes past the fence
// and gives calls that are not watches or streams a deadline.
type guard struct {
	next    http.RoundTripper
	fence   *Fence
	timeout time.Duration
}

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	if writes(req) && req.Context().Value(unfencedKey{}) == nil {
		if err := g.fence.Err(); err != nil {
			return nil, &FencedError{Err: err}
		}
	}
	if g.timeout <= 0 || streams(req) {
		return g.next.RoundTrip(req)
	}
	if d, ok := req.Context().Deadline(); ok && time.Until(d) <= g.timeout {
		return g.next.RoundTrip(req)
	}
	ctx, cancel := context.WithTimeout(req.Context(), g.timeout)
	resp, err := g.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelBody ends the request's deadline when its body is closed (the body is read after RoundTrip).
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// writes says a request changes something: not a read, a dry run, an access or identity review, a
// token for istiod's debug endpoints or a port-forward.
func writes(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	if req.URL.Query().Get("dryRun") == "All" {
		return false
	}
	p := req.URL.Path
	for _, s := range []string{"/selfsubjectaccessreviews", "/selfsubjectrulesreviews", "/selfsubjectreviews", "/subjectaccessreviews", "/token", "/portforward"} {
		if strings.HasSuffix(p, s) {
			return false
		}
	}
	return true
}

// streams says a request stays open: watches, port-forwards, logs and other upgrades.
func streams(req *http.Request) bool {
	q := req.URL.Query()
	if q.Get("watch") == "true" || q.Get("watch") == "1" || q.Get("follow") == "true" || strings.Contains(req.URL.Path, "/watch/") {
		return true
	}
	return req.Header.Get("Upgrade") != "" || strings.HasSuffix(req.URL.Path, "/portforward") || strings.HasSuffix(req.URL.Path, "/exec")
}

// Transient says an error is worth another try after a pause: the apiserver was overloaded (429),
// failed or timed out (5xx), or the connection dropped or timed out. A gate or wait that meets one
// retries with backoff rather than failing or hanging.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	var fenced *FencedError
	if errors.As(err, &fenced) || errors.Is(err, context.Canceled) {
		return false
	}
	if apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsUnexpectedServerError(err) {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

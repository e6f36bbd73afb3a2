// Package traffic sends requests through the test bed's ingress (or any URL) at a steady rate, bounded
// in count and time, and counts how each ended: the proof that a step dropped no request, and, with a
// negative control, that the loop can see one dropped.
package traffic

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Config is one loop: RPS requests per second to URL with Host, until Max requests were sent, Duration
// passed or the context ends, whichever comes first.
type Config struct {
	URL      string
	Host     string
	RPS      int
	Max      int
	Duration time.Duration
	// Timeout bounds one request (default 5s).
	Timeout time.Duration
}

// Summary is how the requests ended.
type Summary struct {
	Sent int `json:"sent"`
	OK   int `json:"ok"` // 2xx
	// Failed are the others, by cause: the status code (with the bed's hop cause, "503/refused"),
	// or "refused", "reset", "timeout", "error" when no answer came.
	Failed int            `json:"failed"`
	Causes map[string]int `json:"causes"`
	// LongestFailureRun is the longest run of consecutive failed requests, in sending order.
	LongestFailureRun int     `json:"longestFailureRun"`
	Seconds           float64 `json:"seconds"`
}

// Loop is a running loop; Stop ends it and returns its summary.
type Loop struct {
	cancel context.CancelFunc
	done   chan Summary
}

// Start runs a loop in the background.
func Start(ctx context.Context, c Config) *Loop {
	ctx, cancel := context.WithCancel(ctx)
	l := &Loop{cancel: cancel, done: make(chan Summary, 1)}
	go func() { l.done <- Run(ctx, c) }()
	return l
}

// Stop ends the loop (requests in flight finish) and returns its summary.
func (l *Loop) Stop() Summary {
	l.cancel()
	return <-l.done
}

// Run sends the loop's requests and waits for the last answer.
func Run(ctx context.Context, c Config) Summary {
	if c.RPS <= 0 {
		c.RPS = 50
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Duration)
		defer cancel()
	}
	client := &http.Client{Timeout: c.Timeout, Transport: &http.Transport{MaxIdleConnsPerHost: c.RPS, DisableCompression: true}}
	start := time.Now()
	var mu sync.Mutex
	var wg sync.WaitGroup
	results := []string{} // "" = ok, else the cause, in sending order
	tick := time.NewTicker(time.Second / time.Duration(c.RPS))
	defer tick.Stop()
	for n := 0; c.Max <= 0 || n < c.Max; n++ {
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
		if ctx.Err() != nil {
			break
		}
		mu.Lock()
		i := len(results)
		results = append(results, "pending")
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			cause := send(client, c)
			mu.Lock()
			results[i] = cause
			mu.Unlock()
		}()
	}
	wg.Wait()
	s := Summary{Causes: map[string]int{}, Seconds: time.Since(start).Seconds()}
	run := 0
	for _, r := range results {
		s.Sent++
		if r == "" {
			s.OK++
			run = 0
			continue
		}
		s.Failed++
		s.Causes[r]++
		run++
		s.LongestFailureRun = max(s.LongestFailureRun, run)
	}
	return s
}

// send makes one request: "" when it got a 2xx, else why not.
func send(client *http.Client, c Config) string {
	req, err := http.NewRequest(http.MethodGet, c.URL, nil)
	if err != nil {
		return "error"
	}
	if c.Host != "" {
		req.Host = c.Host
	}
	resp, err := client.Do(req)
	if err != nil {
		return transportCause(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return ""
	}
	cause := strconv.Itoa(resp.StatusCode)
	if hop := resp.Header.Get("X-Testbed-Cause"); hop != "" {
		cause += "/" + hop
	}
	return cause
}

func transportCause(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "reset"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "error"
}

package gate

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// MoveBack restarts workloads back onto the revision their namespaces select again (a rollback, an
// undo) the way the forward step moved them: batch by batch, never all at once, so capacity and the
// reconnecting sidecars' load on istiod stay what the forward step allowed. Each batch is gated as the
// forward one was before the next starts: rollouts complete, every pod injected by the expected
// revision and, when Proxies is set, SYNCED on it.
type MoveBack struct {
	// Batches in the order to move back: the forward step's, last first.
	Batches [][]kube.WorkloadRef
	// Restart restarts one workload (the caller journals it).
	Restart func(ctx context.Context, w kube.WorkloadRef) error
	// Revision is the revision namespace ns selects now: the one its pods must come back on.
	Revision func(ns string) string
	// Proxies are the sync states istiod reports (namespace/pod → state); nil checks injection only, and
	// so does the rest of the move-back once istiod does not answer (said once: a move-back goes on).
	// It is asked of the istiods of the revisions the batch goes back to only (the revision moved away
	// from may be what failed), for the batch's namespaces only.
	Proxies func(ctx context.Context, revisions, namespaces []string) (map[string]string, error)
	// Timeout bounds each batch.
	Timeout time.Duration
	// Say prints a line (one per batch); Update a live progress line.
	Say, Update func(format string, args ...any)
}

// Run moves every batch back in turn; label names it in the lines printed ("rollback", "undo").
func (m *MoveBack) Run(ctx context.Context, k kubernetes.Interface, label string) error {
	n := 0
	for _, b := range m.Batches {
		if len(b) > 0 {
			n++
		}
	}
	i := 0
	for _, batch := range m.Batches {
		if len(batch) == 0 {
			continue
		}
		i++
		start := time.Now()
		for _, w := range batch {
			if err := m.Restart(ctx, w); err != nil {
				return err
			}
		}
		bctx, cancel := context.WithTimeout(ctx, m.Timeout)
		pods, err := m.gate(bctx, k, batch, fmt.Sprintf("%s batch %d/%d", label, i, n))
		cancel()
		if err != nil {
			return fmt.Errorf("%s batch %d/%d (%s): %w", label, i, n, names(batch), err)
		}
		m.Say("%s batch %d/%d: %s back on %s, %d pods ready%s (%s)", label, i, n, names(batch), strings.Join(m.revisions(batch), ", "), pods,
			map[bool]string{true: " and SYNCED", false: ""}[m.Proxies != nil], time.Since(start).Round(100*time.Millisecond))
	}
	return nil
}

// gate waits for the batch's rollouts, then until its pods are on the expected revisions.
func (m *MoveBack) gate(ctx context.Context, k kubernetes.Interface, batch []kube.WorkloadRef, label string) (int, error) {
	if err := kube.WaitRollouts(ctx, k, batch, func(s string) { m.Update("%s: %s", label, s) }); err != nil {
		return 0, err
	}
	byNS := map[string][]kube.WorkloadRef{}
	for _, w := range batch {
		byNS[w.Namespace] = append(byNS[w.Namespace], w)
	}
	for {
		total, reason := 0, ""
		var proxies map[string]string
		if m.Proxies != nil {
			p, err := m.Proxies(ctx, m.revisions(batch), Namespaces(batch))
			if err != nil {
				m.Say("%s: istiod's sync state unavailable (%v): gating on rollouts and injection only", label, err)
				m.Proxies = nil
			}
			proxies = p
		}
		for _, ns := range slices.Sorted(maps.Keys(byNS)) {
			if m.Revision(ns) == "" {
				continue // a namespace that selects no revision now: its pods come back without a proxy
			}
			l, err := k.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				reason = err.Error()
				break
			}
			c, why := evaluate(byNS[ns], l.Items, proxies, m.Revision(ns), m.Proxies != nil)
			total += c
			if why != "" {
				reason = why
				break
			}
		}
		if reason == "" {
			return total, nil
		}
		m.Update("%s: %s", label, reason)
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%s: %w", reason, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

func (m *MoveBack) revisions(batch []kube.WorkloadRef) []string {
	var out []string
	for _, w := range batch {
		if r := m.Revision(w.Namespace); !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

func names(batch []kube.WorkloadRef) string {
	out := make([]string, len(batch))
	for i, w := range batch {
		out[i] = w.String()
	}
	return strings.Join(out, ", ")
}

// Namespaces are the namespaces of a batch's workloads, sorted: what its gate asks istiod about.
func Namespaces(batch []kube.WorkloadRef) []string {
	var out []string
	for _, w := range batch {
		if !slices.Contains(out, w.Namespace) {
			out = append(out, w.Namespace)
		}
	}
	slices.Sort(out)
	return out
}

//go:build e2e

package e2e

// The ambient profile (make e2e-ambient): istio-cni and ztunnel rolled node by node to the new
// revision, the waypoint moved, the old revision cleaned up, through the real plugin.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

type nodeAgent struct {
	Node, Component, Pod, Version, Revision, Istiod, SyncState string
	Ready, Current                                             bool
}

func nodeAgents(t *testing.T) []nodeAgent {
	t.Helper()
	var d struct {
		NodeAgents []nodeAgent `json:"nodeAgents"`
	}
	mustJSON(t, plugin(t, "status", "--proxies", "-o", "json"), &d)
	return d.NodeAgents
}

// ztunnelsOn says every ztunnel is Ready and SYNCED on revision rev's istiod (version), and every
// istio-cni agent runs version; want names the nodes expected there (nil: all).
func ztunnelsOn(t *testing.T, rev, version string, nodes ...string) error {
	agents := nodeAgents(t)
	if len(agents) != 6 {
		return fmt.Errorf("%d node agents, want 3 ztunnels and 3 istio-cni: %+v", len(agents), agents)
	}
	for _, a := range agents {
		if len(nodes) > 0 && !slices.Contains(nodes, a.Node) {
			continue
		}
		if a.Version != version || !a.Ready || (a.Component == "ztunnel" && (a.Revision != rev || a.SyncState != "SYNCED" || !strings.HasPrefix(a.Istiod, istiodPodPrefix(rev)))) {
			return fmt.Errorf("node %s %s: %+v, want %s %s SYNCED", a.Node, a.Component, a, rev, version)
		}
	}
	return nil
}

// ztunnelWatcher follows the ztunnel pods and keeps the most nodes that were ever without a Ready
// ztunnel at one moment, over every event.
type ztunnelWatcher struct {
	mu      sync.Mutex
	worst   int
	events  int
	stop    context.CancelFunc
	done    chan struct{}
	nodes   []string
	missing []string // the worst moment's nodes
}

func watchZtunnels(t *testing.T) *ztunnelWatcher {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	k := kubernetes.NewForConfigOrDie(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	l, err := k.CoreV1().Pods("istio-system").List(ctx, metav1.ListOptions{LabelSelector: "app=ztunnel"})
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := k.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := &ztunnelWatcher{stop: cancel, done: make(chan struct{})}
	for _, n := range nodes.Items {
		w.nodes = append(w.nodes, n.Name)
	}
	pods := map[string]corev1.Pod{}
	for _, p := range l.Items {
		pods[p.Name] = p
	}
	wi, err := k.CoreV1().Pods("istio-system").Watch(ctx, metav1.ListOptions{LabelSelector: "app=ztunnel", ResourceVersion: l.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	w.observe(pods)
	go func() {
		defer close(w.done)
		for ev := range wi.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			if ev.Type == watch.Deleted {
				delete(pods, p.Name)
			} else {
				pods[p.Name] = *p
			}
			w.observe(pods)
		}
	}()
	return w
}

func (w *ztunnelWatcher) observe(pods map[string]corev1.Pod) {
	serving := map[string]bool{}
	for _, p := range pods {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				serving[p.Spec.NodeName] = true
			}
		}
	}
	var missing []string
	for _, n := range w.nodes {
		if !serving[n] {
			missing = append(missing, n)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events++
	if len(missing) > w.worst {
		w.worst, w.missing = len(missing), missing
	}
}

// finish stops the watcher: the most nodes without a Ready ztunnel at once, and the events seen.
func (w *ztunnelWatcher) finish() (int, []string, int) {
	w.stop()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.worst, w.missing, w.events
}

type rollResult struct {
	Journal string `json:"journalEntry"`
	Details struct {
		Batches    [][]string
		Remaining  []string
		RolledBack []string
		Nodes      []struct {
			Node     string
			Replaced []string
			Drained  int
		}
	}
}

func testAmbientRoll(t *testing.T) {
	requireProfile(t, "ambient")
	eventually(t, 60*time.Second, "every ztunnel SYNCED on 1-30", func() error { return ztunnelsOn(t, "1-30", "1.30.0") })
	var pre struct {
		Findings []struct{ Code, Object string }
	}
	r := plugin(t, "precheck", "-o", "json", "--analysis=false")
	if err := json.Unmarshal([]byte(r.stdout), &pre); err != nil {
		t.Fatalf("precheck: %v\n%s", err, r.stderr)
	}
	resets := 0
	for _, f := range pre.Findings {
		if f.Code == "ZTUNNEL_ROLL_RESETS" {
			resets++
		}
	}
	if resets == 0 {
		t.Errorf("precheck names no node whose connections a ztunnel roll resets: %+v", pre.Findings)
	}
	ensureNewRevision(t)

	// Cleanup of the old revision refuses while node agents and the waypoint use it.
	res, cr := cleanup(t)
	kinds := map[string]bool{}
	for _, b := range res.Details.Blockers {
		kinds[b.Kind] = true
	}
	if cr.code != 66 || !kinds["ztunnel"] || !kinds["istio-cni"] || !kinds["waypoint"] {
		t.Fatalf("cleanup before the roll: exit %d, blockers %+v, want 66 naming ztunnel, istio-cni and the waypoint\n%s", cr.code, res.Details.Blockers, cr.stderr)
	}

	// A failed gate: istiod 1-31 stopped, the first node's new ztunnel never SYNCs; the step rolls that
	// node back (74) and gives the DaemonSets their template back; nothing else moved.
	hold := filepath.Join(testbedDir, "istiod", "1-31.hold")
	if err := os.WriteFile(hold, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(hold) })
	time.Sleep(3 * time.Second) // the agent stops a held istiod within 2 s
	var failed rollResult
	r = plugin(t, "ztunnel-roll", "--to", "1-31", "--timeout", "8s", "-y", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &failed); err != nil || r.code != 74 || len(failed.Details.RolledBack) != 1 {
		t.Fatalf("ztunnel-roll with istiod 1-31 down: exit %d, rolled back %v (%v), want 74 and the first node back\n%s", r.code, failed.Details.RolledBack, err, r.stderr)
	}
	if err := ztunnelsOn(t, "1-30", "1.30.0"); err != nil {
		t.Fatalf("after the rollback: %v", err)
	}
	os.Remove(hold)
	eventually(t, 60*time.Second, "istiod 1-31 answering again", func() error {
		if w := status(t).Warnings; len(w) > 0 {
			return fmt.Errorf("%v", w)
		}
		return nil
	})

	// A staged roll: two batches of one node, then the rest; a watcher on every ztunnel pod event.
	w := watchZtunnels(t)
	var first, last rollResult
	mustJSON(t, plugin(t, "ztunnel-roll", "--to", "1-31", "--max-batches", "2", "-y", "-o", "json"), &first)
	if len(first.Details.Batches) != 2 || len(first.Details.Remaining) != 1 {
		t.Fatalf("first roll: batches %v, remaining %v; want 2 batches of one node and one left", first.Details.Batches, first.Details.Remaining)
	}
	// The last node with --drain, through kubectl's drain helper and the real Eviction API: the node's
	// bookinfo pods (ambient) are evicted and come back on the other nodes, the ones with emptyDir
	// volumes only with --delete-emptydir-data, as kubectl drain asks.
	node := first.Details.Remaining[0]
	onNode := func() []string {
		out := kubectl(t, "-n", "bookinfo", "get", "pods", "--field-selector", "spec.nodeName="+node, "-o", "jsonpath={range .items[*]}{.metadata.name}:{.spec.volumes[*].emptyDir}{\"\\n\"}{end}")
		var pods []string // NAME:EMPTYDIRS of the workloads' pods, not the waypoint's (a proxy, not ambient)
		for _, l := range strings.Split(out, "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.Contains(l, "waypoint") {
				pods = append(pods, l)
			}
		}
		return pods
	}
	before := onNode()
	scratch := false
	for _, p := range before {
		scratch = scratch || !strings.HasSuffix(p, ":")
	}
	if scratch {
		r := plugin(t, "ztunnel-roll", "--to", "1-31", "--drain", "-y", "-o", "json")
		if r.code != 65 || !strings.Contains(r.stderr, "--delete-emptydir-data") {
			t.Fatalf("--drain over pods with emptyDir data: exit %d, want 65 naming --delete-emptydir-data\n%s", r.code, r.stderr)
		}
	}
	mustJSON(t, plugin(t, "ztunnel-roll", "--to", "1-31", "--drain", "--delete-emptydir-data", "-y", "-o", "json"), &last)
	if len(last.Details.Batches) != 1 || !slices.Equal(last.Details.Batches[0], first.Details.Remaining) {
		t.Fatalf("second roll: batches %v, want the node left over, %v", last.Details.Batches, first.Details.Remaining)
	}
	if len(last.Details.Nodes) != 1 || last.Details.Nodes[0].Drained != len(before) {
		t.Errorf("node %s had %d bookinfo pods %v; the roll drained %+v", node, len(before), before, last.Details.Nodes)
	}
	if left := onNode(); len(left) != 0 && len(before) > 0 {
		t.Errorf("bookinfo pods still on drained node %s: %v", node, left)
	}
	eventually(t, 60*time.Second, "every ztunnel SYNCED on 1-31", func() error { return ztunnelsOn(t, "1-31", "1.31.0") })
	worst, when, events := w.finish()
	t.Logf("ztunnel watcher: %d pod events, at most %d node(s) without a Ready ztunnel at once (%v)", events, worst, when)
	if worst > 1 || events < 9 {
		t.Errorf("%d nodes at once without a Ready ztunnel (%v) over %d events; want at most 1, over the 3 replacements", worst, when, events)
	}

	// undo takes back the last command: its one batch, the last node, back on 1-30.
	lastNode := last.Details.Batches[0][0]
	w = watchZtunnels(t)
	if r := plugin(t, "undo", "-y"); r.code != 0 {
		t.Fatalf("undo: exit %d: %s", r.code, r.stderr)
	}
	worst, when, _ = w.finish()
	if worst > 1 {
		t.Errorf("undo: %d nodes at once without a Ready ztunnel (%v)", worst, when)
	}
	var others []string
	for _, b := range first.Details.Batches {
		others = append(others, b...)
	}
	eventually(t, 60*time.Second, "the last node back on 1-30, the others on 1-31", func() error {
		if err := ztunnelsOn(t, "1-30", "1.30.0", lastNode); err != nil {
			return err
		}
		return ztunnelsOn(t, "1-31", "1.31.0", others...)
	})
	// Killed after its cordon: with istiod 1-31 held the new ztunnel never SYNCs, so the step waits in
	// its gate with the node cordoned; SIGKILL there. The rerun of the same command, once the lease is
	// free, takes back the cordon the dead run made (recorded before it was made) and completes.
	shortLease(t)
	if err := os.WriteFile(hold, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	rollArgs := []string{"ztunnel-roll", "--to", "1-31", "-y", "-o", "json"}
	killed := startPlugin(t, rollArgs...)
	eventually(t, 60*time.Second, "node "+lastNode+" cordoned by the roll", func() error {
		if u := kubectl(t, "get", "node", lastNode, "-o", "jsonpath={.spec.unschedulable}"); u != "true" {
			return fmt.Errorf("unschedulable=%q", u)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // in the gate now: waiting for the new ztunnel to SYNC
	if err := killed.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed.wait()
	os.Remove(hold)
	if u := kubectl(t, "get", "node", lastNode, "-o", "jsonpath={.spec.unschedulable}"); u != "true" {
		t.Fatalf("the killed roll's node is not cordoned (%q): the scenario did not happen", u)
	}
	eventually(t, 60*time.Second, "istiod 1-31 answering again", func() error {
		if w := status(t).Warnings; len(w) > 0 {
			return fmt.Errorf("%v", w)
		}
		return nil
	})
	leaseFree(t)
	rr := plugin(t, rollArgs...)
	if rr.code != 0 || !strings.Contains(rr.stderr, "uncordoning the nodes it cordoned ("+lastNode+")") {
		t.Fatalf("rerun after the killed roll: exit %d, want 0 uncordoning %s\n%s", rr.code, lastNode, rr.stderr)
	}
	if u := kubectl(t, "get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}={.spec.unschedulable} {end}"); strings.Contains(u, "true") {
		t.Errorf("a node is left cordoned after the rerun: %s", u)
	}
	eventually(t, 60*time.Second, "every ztunnel SYNCED on 1-31 again", func() error { return ztunnelsOn(t, "1-31", "1.31.0") })
	ds := kubectl(t, "-n", "istio-system", "get", "ds", "-o", "jsonpath={range .items[*]}{.spec.updateStrategy.type} {end}")
	if strings.TrimSpace(ds) != "RollingUpdate RollingUpdate" {
		t.Errorf("the DaemonSets' own strategy was not put back after the roll: %q", ds)
	}

	// The waypoint moves with the gated gateway move; then nothing is left on 1-30.
	if r := plugin(t, "migrate-gw", "--metrics=false", "gateway/waypoint", "-n", "bookinfo", "--to", "1-31", "-y"); r.code != 0 {
		t.Fatalf("migrate-gw the waypoint: exit %d: %s", r.code, r.stderr)
	}
	res, cr = cleanup(t, "--helm", "-y")
	if cr.code != 0 {
		t.Fatalf("cleanup after the roll: exit %d, blockers %+v: %s", cr.code, res.Details.Blockers, cr.stderr)
	}
	d := status(t)
	var revs []string
	for _, rv := range d.Revisions {
		revs = append(revs, rv.Name)
	}
	sort.Strings(revs)
	if !slices.Equal(revs, []string{"1-31"}) {
		t.Errorf("revisions after cleanup: %v", revs)
	}
	for _, p := range d.Proxies {
		if p.Revision != "1-31" || p.State != "SYNCED" {
			t.Errorf("proxy %s/%s (%s) on %s %s after cleanup", p.Namespace, p.Pod, p.Type, p.Revision, p.State)
		}
	}
	if err := ztunnelsOn(t, "1-31", "1.31.0"); err != nil {
		t.Error(err)
	}

	// Negative control: the watcher sees what ztunnel-roll prevents. A plain rolling restart allowed to
	// take every node's ztunnel at once (maxUnavailable 3) leaves more than one node without one.
	kubectl(t, "-n", "istio-system", "patch", "ds", "ztunnel", "--type=merge", "-p", `{"spec":{"updateStrategy":{"rollingUpdate":{"maxUnavailable":3,"maxSurge":0}}}}`)
	w = watchZtunnels(t)
	kubectl(t, "-n", "istio-system", "rollout", "restart", "ds/ztunnel")
	kubectl(t, "-n", "istio-system", "rollout", "status", "ds/ztunnel", "--timeout=2m")
	worst, when, _ = w.finish()
	t.Logf("negative control (rollout restart, maxUnavailable 3): at most %d nodes without a Ready ztunnel at once (%v)", worst, when)
	if worst < 2 {
		t.Errorf("the watcher saw at most %d node without a Ready ztunnel during an all-at-once restart: it would not catch a roll that takes several", worst)
	}
}

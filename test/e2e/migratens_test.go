//go:build e2e

package e2e

// These scenarios move the fixtures to the new revision, so they run late (see scenarios_test.go).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

func clients(t *testing.T) *kube.Clients {
	t.Helper()
	cf := genericclioptions.NewConfigFlags(true)
	cf.KubeConfig = &kubeconfig
	c, err := kube.NewClients(cf)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readyWatcher records, for every Deployment in the namespaces, the lowest readyReplicas seen while
// its spec asks for maxUnavailable 0 with more than one replica.
type readyWatcher struct {
	mu     sync.Mutex
	low    map[string]int32
	want   map[string]int32
	cancel context.CancelFunc
	done   sync.WaitGroup
}

func watchReady(t *testing.T, namespaces ...string) *readyWatcher {
	c := clients(t)
	ctx, cancel := context.WithCancel(context.Background())
	w := &readyWatcher{low: map[string]int32{}, want: map[string]int32{}, cancel: cancel}
	for _, ns := range namespaces {
		wi, err := c.Kube.AppsV1().Deployments(ns).Watch(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w.done.Add(1)
		go func() {
			defer w.done.Done()
			for ev := range wi.ResultChan() {
				d, ok := ev.Object.(*appsv1.Deployment)
				if !ok || ev.Type == watch.Deleted || d.Spec.Replicas == nil || *d.Spec.Replicas < 2 ||
					d.Spec.Strategy.RollingUpdate == nil || d.Spec.Strategy.RollingUpdate.MaxUnavailable == nil ||
					d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
					continue
				}
				key := d.Namespace + "/" + d.Name
				w.mu.Lock()
				w.want[key] = *d.Spec.Replicas
				if low, seen := w.low[key]; !seen || d.Status.ReadyReplicas < low {
					w.low[key] = d.Status.ReadyReplicas
				}
				w.mu.Unlock()
			}
		}()
		go func() { <-ctx.Done(); wi.Stop() }()
	}
	return w
}

func (w *readyWatcher) check(t *testing.T) {
	w.cancel()
	w.done.Wait()
	if len(w.want) == 0 {
		t.Error("the watcher saw no Deployment events")
	}
	for k, want := range w.want {
		if w.low[k] < want {
			t.Errorf("%s dropped to %d ready replicas (wants %d, maxUnavailable 0)", k, w.low[k], want)
		}
	}
}

func generations(t *testing.T, namespaces ...string) map[string]int64 {
	c := clients(t)
	out := map[string]int64{}
	for _, ns := range namespaces {
		l, err := c.Kube.AppsV1().Deployments(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range l.Items {
			out[ns+"/"+d.Name] = d.Generation
		}
	}
	return out
}

func resourceVersions(t *testing.T, namespaces ...string) map[string]string {
	out := map[string]string{}
	for _, ns := range namespaces {
		out["ns/"+ns] = kubectl(t, "get", "namespace", ns, "-o", "jsonpath={.metadata.resourceVersion}")
		for _, line := range strings.Fields(kubectl(t, "-n", ns, "get", "deploy,sts,ds", "-o", `jsonpath={range .items[*]}{.kind}/{.metadata.name}={.metadata.resourceVersion}{" "}{end}`)) {
			k, v, _ := strings.Cut(line, "=")
			out[ns+"/"+k] = v
		}
	}
	return out
}

type stepResult struct {
	DryRun  string
	Journal string `json:"journalEntry"`
	Actions []struct{ Object, Verb string }
	Summary string
	Details struct {
		Plan struct {
			Unmanaged []string
		}
		Restarted  []string
		RolledBack bool
		Halted     string
		Gates      []struct {
			Passed bool
			Reason string
		}
		Analysis []struct {
			Namespace   string
			Passed      bool
			NewErrors   []string
			NewWarnings []string
		}
	}
}

func migrate(t *testing.T, args ...string) (stepResult, result) {
	t.Helper()
	r := plugin(t, append([]string{"migrate-ns", "--metrics=false", "-o", "json"}, args...)...)
	var res stepResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("migrate-ns %v: exit %d, stdout not JSON: %v\n%s\n%s", args, r.code, err, r.stdout, r.stderr)
	}
	return res, r
}

func testMigrateNsBadInputChangesNothing(t *testing.T) {
	ensureNewRevision(t)
	before := resourceVersions(t, "shop")
	for _, args := range [][]string{
		{"shop", "--to", "9-99"},
		{"shop", "no-such-ns", "--to", "1-31"},
		{"shop", "--to", "1-31", "--canary", "deploy/nope"},
		{"istio-system", "--to", "1-31"},
	} {
		r := plugin(t, append([]string{"migrate-ns"}, args...)...)
		if r.code != 65 || r.stdout != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 65 and nothing on stdout", args, r.code, r.stdout, r.stderr)
		}
	}
	if r := plugin(t, "migrate-ns", "--metrics=false", "shop"); r.code != 64 {
		t.Errorf("missing --to: exit %d", r.code)
	}
	if after := resourceVersions(t, "shop"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("bad input changed objects:\n%v\n%v", before, after)
	}
}

func testMigrateNsServerDryRun(t *testing.T) {
	ensureNewRevision(t)
	before := resourceVersions(t, "shop", "payments")
	res, r := migrate(t, "shop", "payments", "--to", "1-31", "--dry-run=server")
	if r.code != 0 || res.DryRun != "server" || len(res.Actions) < 5 {
		t.Fatalf("exit %d, %+v, %s", r.code, res, r.stderr)
	}
	if after := resourceVersions(t, "shop", "payments"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("--dry-run=server changed resourceVersions:\n%v\n%v", before, after)
	}
	res, r = migrate(t, "shop", "--to", "1-31", "--dry-run=client")
	if r.code != 0 || res.DryRun != "client" || len(res.Actions) == 0 {
		t.Errorf("client dry run: exit %d %+v", r.code, res)
	}
}

// testMigrateNsUndo migrates a namespace and undoes it: the label goes back before any pod is
// recreated, every workload the step restarted is restarted again and rolled out when undo returns,
// and every proxy ends on 1-30, SYNCED, with the replicas scaled since the migration kept.
func testMigrateNsUndo(t *testing.T) {
	ensureNewRevision(t)
	const ns = "e2e-undo-mig"
	t.Cleanup(func() { run(t, binDir+"/kubectl", "delete", "namespace", ns, "--timeout=90s") })
	kubectl(t, "create", "namespace", ns)
	kubectl(t, "label", "namespace", ns, "istio.io/rev=1-30")
	for _, d := range []string{"front", "back"} {
		kubectl(t, "-n", ns, "create", "deployment", d, "--image=registry.example/web:1", "--replicas=2")
	}
	for _, d := range []string{"front", "back"} {
		kubectl(t, "-n", ns, "rollout", "status", "deployment/"+d, "--timeout=60s")
	}
	eventually(t, 60*time.Second, ns+" on 1-30", func() error { return checkProxiesOnInjectedRevision(t, ns) })
	res, r := migrate(t, ns, "--to", "1-31", "-y")
	if r.code != 0 || res.Journal == "" {
		t.Fatalf("migrate-ns: exit %d %s", r.code, r.stderr)
	}
	kubectl(t, "-n", ns, "scale", "deployment/back", "--replicas=3") // as an HPA would, after the step
	kubectl(t, "-n", ns, "rollout", "status", "deployment/back", "--timeout=60s")
	if u := plugin(t, "undo", res.Journal, "-o", "json"); u.code != 0 {
		t.Fatalf("undo %s: exit %d %s", res.Journal, u.code, u.stderr)
	}
	if l := kubectl(t, "get", "namespace", ns, "-o", "jsonpath={.metadata.labels.istio\\.io/rev}"); l != "1-30" {
		t.Errorf("namespace label after undo %q, want 1-30", l)
	}
	for _, d := range []string{"front", "back"} {
		// undo returns once the restarts are rolled out: nothing left to wait for.
		if r := run(t, filepath.Join(binDir, "kubectl"), "-n", ns, "rollout", "status", "deployment/"+d, "--timeout=1s"); r.code != 0 {
			t.Errorf("deployment %s not rolled out when undo returned: %s", d, r.stderr)
		}
	}
	if n := kubectl(t, "-n", ns, "get", "deployment", "back", "-o", "jsonpath={.spec.replicas}"); n != "3" {
		t.Errorf("undo changed back's replicas to %s, want the 3 it had since", n)
	}
	eventually(t, 30*time.Second, "every proxy of "+ns+" on 1-30", func() error {
		for pod, rev := range injectedPods(t, ns) {
			if rev != "1-30" {
				return fmt.Errorf("%s injected by %s", pod, rev)
			}
		}
		return checkProxiesOnInjectedRevision(t, ns)
	})
}

// testMigrateNsFailureRollsBack stops the new istiod in the middle of a migration: the gate fails
// (exit 74), the namespace after it is never touched, and with --rollback-on-failure the touched
// namespaces are back on the old revision with their proxies SYNCED.
func testMigrateNsFailureRollsBack(t *testing.T) {
	ensureNewRevision(t)
	hold := filepath.Join(testbedDir, "istiod", "1-31.hold")
	t.Cleanup(func() {
		os.Remove(hold)
		// Deleted together (one namespace takes ~12 s here) and waited for: cleanup later refuses while
		// anything is left on 1-30.
		run(t, binDir+"/kubectl", "delete", "namespace", "e2e-fail-a", "e2e-fail-b", "e2e-fail-c", "--timeout=90s")
	})
	for i, ns := range []string{"e2e-fail-a", "e2e-fail-b", "e2e-fail-c"} {
		kubectl(t, "create", "namespace", ns)
		kubectl(t, "label", "namespace", ns, "istio.io/rev=1-30")
		kubectl(t, "-n", ns, "create", "deployment", "web", "--image=registry.example/web:1", "--replicas=2")
		delay := "1s"
		if i == 1 {
			delay = "8s" // slow enough to stop istiod while b's new pods come up
		}
		kubectl(t, "-n", ns, "patch", "deployment", "web", "--type=merge", "-p",
			`{"spec":{"template":{"metadata":{"annotations":{"testbed.istio-upgrade.io/ready-delay":"`+delay+`"}}}}}`)
	}
	for _, ns := range []string{"e2e-fail-a", "e2e-fail-b", "e2e-fail-c"} {
		kubectl(t, "-n", ns, "rollout", "status", "deployment/web", "--timeout=60s")
	}
	eventually(t, 60*time.Second, "fail namespaces on 1-30", func() error { return checkProxiesOnInjectedRevision(t, "e2e-fail-a") })
	before := resourceVersions(t, "e2e-fail-c")

	cmd := exec.Command(filepath.Join(binDir, "kubectl"), "istio-upgrade", "migrate-ns", "--metrics=false", "e2e-fail-a", "e2e-fail-b", "e2e-fail-c",
		"--to", "1-31", "--batch-size", "1", "--timeout", "20s", "--rollback-on-failure", "-y", "-o", "json")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "PATH="+binDir+":"+os.Getenv("PATH"))
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Capacity, watched through the whole run, the rollback included: each web keeps its 2 ready pods.
	ready := watchReady(t, "e2e-fail-a", "e2e-fail-b")
	// Stop the new istiod once namespace b has been relabelled (a passed its gate).
	eventually(t, 90*time.Second, "e2e-fail-b relabelled", func() error {
		if l := kubectl(t, "get", "namespace", "e2e-fail-b", "-o", "jsonpath={.metadata.labels.istio\\.io/rev}"); l != "1-31" {
			return fmt.Errorf("label %q", l)
		}
		return nil
	})
	if err := os.WriteFile(hold, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	var res stepResult
	if jerr := json.Unmarshal([]byte(out.String()), &res); jerr != nil {
		t.Fatalf("not JSON: %v\n%s\n%s", jerr, out.String(), errOut.String())
	}
	// istiod stopped: the proxies never sync, so the gate times out (74); a failing check would be 75.
	if (code != 74 && code != 75) || !res.Details.RolledBack || res.Details.Halted == "" {
		t.Fatalf("exit %d, rolledBack %v, halted %q; stderr:\n%s", code, res.Details.RolledBack, res.Details.Halted, errOut.String())
	}
	ready.check(t)
	// Moved back in the step's batches, last first, one line each.
	if i, j := strings.Index(errOut.String(), "rollback batch 1/2: e2e-fail-b/deployment/web back on 1-30"),
		strings.Index(errOut.String(), "rollback batch 2/2: e2e-fail-a/deployment/web back on 1-30"); i < 0 || j < i {
		t.Errorf("the rollback did not move back batch by batch, last first:\n%s", errOut.String())
	}
	if after := resourceVersions(t, "e2e-fail-c"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("namespace c was touched after the failed gate:\n%v\n%v", before, after)
	}
	for _, ns := range []string{"e2e-fail-a", "e2e-fail-b"} {
		if l := kubectl(t, "get", "namespace", ns, "-o", "jsonpath={.metadata.labels.istio\\.io/rev}"); l != "1-30" {
			t.Errorf("%s label after rollback: %q", ns, l)
		}
	}
	os.Remove(hold)
	for _, ns := range []string{"e2e-fail-a", "e2e-fail-b"} {
		eventually(t, 90*time.Second, ns+" back on 1-30 and SYNCED", func() error {
			for p, rev := range injectedPods(t, ns) {
				if rev != "1-30" {
					return fmt.Errorf("%s on %s", p, rev)
				}
			}
			return checkProxiesOnInjectedRevision(t, ns)
		})
	}
	// The new istiod comes back once the hold is gone.
	eventually(t, 90*time.Second, "istiod 1-31 back", func() error {
		for _, r := range status(t).Revisions {
			if r.Name == "1-31" && r.Ready > 0 {
				return nil
			}
		}
		return fmt.Errorf("not ready")
	})
}

// testMigrateNsCanaryThenAll is the runbook: canary first, then the rest, then everything.
func testMigrateNsCanaryThenAll(t *testing.T) {
	ensureNewRevision(t)
	fixtures := []string{"bookinfo", "shop", "payments"}
	gens := generations(t, fixtures...)
	w := watchReady(t, fixtures...)
	loop := bookinfoLoop(80) // productpage, behind the ingress route, is migrated here
	defer noFailures(t, "migrate-ns of bookinfo (productpage behind the route)", loop, 300)

	res, r := migrate(t, "bookinfo", "--to", "1-31", "--canary", "deploy/details-v1")
	if r.code != 0 || len(res.Details.Restarted) != 1 || !strings.Contains(res.Details.Halted, "confirmation") {
		t.Fatalf("canary run: exit %d restarted %v halted %q\n%s", r.code, res.Details.Restarted, res.Details.Halted, r.stderr)
	}
	if res.Journal == "" {
		t.Error("canary run not journaled")
	}
	restarted := map[string]bool{}
	for _, w := range res.Details.Restarted {
		restarted[w] = true
	}
	res, r = migrate(t, "--all", "--to", "1-31", "--batch-size", "3", "-y")
	if r.code != 0 {
		t.Fatalf("--all: exit %d\n%s", r.code, r.stderr)
	}
	for _, g := range res.Details.Gates {
		if !g.Passed {
			t.Errorf("gate failed: %+v", g)
		}
	}
	w.check(t)
	for _, x := range res.Details.Restarted {
		if restarted[x] {
			t.Errorf("%s restarted by both runs", x)
		}
		restarted[x] = true
	}
	// Every Deployment the runs say they restarted changed exactly once; every other one not at all
	// (earlier tests may already have moved some to 1-31: those are skipped, not restarted).
	after := generations(t, fixtures...)
	for k, g := range after {
		ns, name, _ := strings.Cut(k, "/")
		want := int64(0)
		if restarted[ns+"/deployment/"+name] {
			want = 1
		}
		if g-gens[k] != want {
			t.Errorf("%s restarted %d times, want %d", k, g-gens[k], want)
		}
	}
	if len(restarted) < 5 {
		t.Errorf("only %d workloads restarted: %v", len(restarted), restarted)
	}
	for _, ns := range fixtures {
		eventually(t, 60*time.Second, ns+" on 1-31", func() error {
			for p, rev := range injectedPods(t, ns) {
				if rev != "1-31" {
					return fmt.Errorf("%s still on %s", p, rev)
				}
			}
			return checkProxiesOnInjectedRevision(t, ns)
		})
	}
	// A rerun restarts nothing.
	res, r = migrate(t, "--all", "--to", "1-31", "-y")
	if r.code != 0 || len(res.Details.Restarted) != 0 {
		t.Errorf("rerun: exit %d restarted %v", r.code, res.Details.Restarted)
	}
}

// testUnmanagedPodsAreNamed: an injected bare pod and a Job's pod in a namespace migrate-ns moves are
// named in its plan with the step that moves each (no restart reaches them), and status lists them.
func testUnmanagedPodsAreNamed(t *testing.T) {
	ensureNewRevision(t)
	const ns = "e2e-unmanaged"
	t.Cleanup(func() { run(t, binDir+"/kubectl", "delete", "namespace", ns, "--timeout=90s") })
	kubectl(t, "create", "namespace", ns)
	kubectl(t, "label", "namespace", ns, "istio.io/rev=1-30")
	kubectl(t, "-n", ns, "run", "debug", "--image=registry.example/debug:1")
	// A Job mid-run: the bed completes a Job's pods at once unless run-for keeps them running.
	job := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(job, []byte(`apiVersion: batch/v1
kind: Job
metadata: {name: backup, namespace: `+ns+`}
spec:
  template:
    metadata: {annotations: {testbed.istio-upgrade.io/run-for: 10m}}
    spec:
      restartPolicy: Never
      containers: [{name: backup, image: registry.example/backup:1}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "apply", "-f", job)
	eventually(t, 60*time.Second, "the bare pod and the Job's pod injected and running", func() error {
		got := injectedPods(t, ns)
		if len(got) != 2 {
			return fmt.Errorf("injected pods %v", got)
		}
		return nil
	})
	res, r := migrate(t, ns, "--to", "1-31", "--dry-run=client")
	joined := strings.Join(res.Details.Plan.Unmanaged, "\n")
	if r.code != 0 || len(res.Details.Plan.Unmanaged) != 2 || !strings.Contains(joined, "pod/"+ns+"/debug (no controller) stays on 1-30: no controller: delete and re-create it by hand") ||
		!strings.Contains(joined, "(Job/backup) stays on 1-30: a Job's pod keeps its proxy until it ends") {
		t.Fatalf("migrate-ns plan: exit %d, unmanaged %q\n%s", r.code, res.Details.Plan.Unmanaged, r.stderr)
	}
	var d struct {
		Unmanaged []struct{ Namespace, Pod, Owner, InjectedRevision string }
	}
	mustJSON(t, plugin(t, "status", "-n", ns, "-o", "json"), &d)
	owners := map[string]string{}
	for _, u := range d.Unmanaged {
		if u.Namespace == ns && u.InjectedRevision == "1-30" {
			owners[u.Pod] = u.Owner
		}
	}
	if owners["debug"] != "" || len(owners) != 2 {
		t.Errorf("status's unmanaged pods: %+v", d.Unmanaged)
	}
	for p, o := range owners {
		if p != "debug" && o != "Job/backup" {
			t.Errorf("status names %s's controller %q, want Job/backup", p, o)
		}
	}
}

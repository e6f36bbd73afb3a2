//go:build e2e

package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	engine "github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// The faults an operator meets mid-upgrade, each through a real `kubectl istio-upgrade`, with the
// cluster's state checked afterwards: a killed run, a frozen one, a paused apiserver, a planted
// journal entry, five steps started at once.

// testLease is the lock's lease the fault tests give every plugin they run (KUBECTL_ISTIO_UPGRADE_LOCK_LEASE):
// a third of the default, so waiting out a dead holder takes seconds, not a minute.
const testLease = 10 * time.Second

func shortLease(t *testing.T) { t.Setenv(engine.LeaseEnv, testLease.String()) }

// leaseFree waits until the lock's lease has not been renewed for its duration (its holder is dead or
// frozen), so that the next step watches it and takes it over.
func leaseFree(t *testing.T) {
	t.Helper()
	d := engine.LockDuration
	if v, err := time.ParseDuration(os.Getenv(engine.LeaseEnv)); err == nil {
		d = v
	}
	time.Sleep(d + 2*time.Second)
}

// restartedOnce checks that every Deployment of ns changed generation exactly once since before.
func restartedOnce(t *testing.T, ns string, before map[string]int64) {
	t.Helper()
	for k, g := range generations(t, ns) {
		if d := g - before[k]; d != 1 {
			t.Errorf("%s restarted %d times, want exactly once", k, d)
		}
	}
}

func onRevision(t *testing.T, ns, rev string) func() error {
	return func() error {
		for p, r := range injectedPods(t, ns) {
			if r != rev {
				return fmt.Errorf("%s on %s", p, r)
			}
		}
		return checkProxiesOnInjectedRevision(t, ns)
	}
}

func waitStderr(t *testing.T, b *background, timeout time.Duration, want string) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("%q on the step's stderr", want), func() error {
		if !strings.Contains(b.errors(), want) {
			return fmt.Errorf("stderr so far: %q", b.errors())
		}
		return nil
	})
}

func newestEntry(t *testing.T) journal.Entry {
	t.Helper()
	e := journalEntries(t)
	if len(e) == 0 {
		t.Fatal("no journal entry")
	}
	return e[len(e)-1]
}

// migrationHitInBatch1 starts migrate-ns of a new namespace ns (three Deployments, one per batch, with
// the test lease) and sends sig once its first batch is restarted: the step, its command line and the
// Deployments' generations before it.
func migrationHitInBatch1(t *testing.T, ns string, sig syscall.Signal) (*background, []string, map[string]int64) {
	t.Helper()
	shortLease(t)
	ensureNewRevision(t)
	workloadNamespaces(t, "3s", []string{"web1", "web2", "web3"}, ns)
	gens := generations(t, ns)
	args := []string{"migrate-ns", "--metrics=false", ns, "--to", "1-31", "--batch-size", "1", "-y"}
	a := startPlugin(t, args...)
	waitStderr(t, a, 60*time.Second, "batch 1: restarted")
	if err := a.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return a, args, gens
}

// testFaultKilledMigrationResumes: SIGKILL during a migrate-ns batch leaves its entry running and the
// lease held. Once the lease is free a rerun takes it over, seals the entry interrupted, gates the
// batch the killed run restarted (never restarting it again) and completes the same entry; every
// workload is restarted exactly once, and undo restores all of it.
func testFaultKilledMigrationResumes(t *testing.T) {
	ns := "e2e-kill"
	a, args, gens := migrationHitInBatch1(t, ns, syscall.SIGKILL)
	a.wait()
	killed := newestEntry(t)
	if killed.State != journal.StateRunning || len(killed.Units) != 1 || killed.Units[0].Done {
		t.Fatalf("the killed run's entry must be running with its batch begun, not done: %+v", killed)
	}
	// At once, the lease still looks alive: refused with the lock's code, nothing changed.
	if r := plugin(t, args...); r.code != 73 {
		t.Errorf("rerun while the dead run's lease looks alive: exit %d, want 73\n%s", r.code, r.stderr)
	}
	leaseFree(t)
	if h := plugin(t, "history"); !strings.Contains(h.stdout, "may be gone") {
		t.Errorf("history must say the killed run's lease is no longer renewed:\n%s", h.stdout)
	}
	r := plugin(t, args...)
	if r.code != 0 {
		t.Fatalf("rerun after the lease freed: exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"taking over the lock", "marked interrupted", "resuming journal entry " + killed.ID, "gating 1 workloads the interrupted run restarted"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the rerun must say %q:\n%s", want, r.stderr)
		}
	}
	done := newestEntry(t)
	if done.ID != killed.ID || done.State != journal.StateInEffect || len(done.InFlight()) != 0 {
		t.Errorf("the rerun must complete the killed run's entry %s: %+v", killed.ID, done)
	}
	restartedOnce(t, ns, gens)
	eventually(t, 60*time.Second, ns+" on 1-31", onRevision(t, ns, "1-31"))

	if u := plugin(t, "undo", done.ID, "-y"); u.code != 0 {
		t.Fatalf("undo: exit %d %s", u.code, u.stderr)
	}
	if l := kubectl(t, "get", "namespace", ns, "-o", "jsonpath={.metadata.labels.istio\\.io/rev}"); l != "1-30" {
		t.Errorf("label after undo %q, want 1-30", l)
	}
	eventually(t, 60*time.Second, ns+" back on 1-30", onRevision(t, ns, "1-30"))
}

// testFaultFrozenStepWritesNothingAfterTakeover: a step frozen (SIGSTOP) past its lease is taken over
// by a second operator, who completes the work; the frozen one, continued (SIGCONT), writes nothing
// and exits with the lock's code.
func testFaultFrozenStepWritesNothingAfterTakeover(t *testing.T) {
	ns := "e2e-freeze"
	a, args, gens := migrationHitInBatch1(t, ns, syscall.SIGSTOP)
	defer a.cmd.Process.Signal(syscall.SIGCONT) //nolint:errcheck // a failed test must not leave it stopped
	leaseFree(t)
	if r := plugin(t, args...); r.code != 0 {
		t.Fatalf("the second operator: exit %d\n%s", r.code, r.stderr)
	}
	restartedOnce(t, ns, gens)
	after := resourceVersions(t, ns)
	entry := newestEntry(t)
	if entry.State != journal.StateInEffect {
		t.Fatalf("the second operator's entry: %+v", entry)
	}
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if code := a.wait(); code != 73 {
		t.Errorf("the frozen step, continued: exit %d, want 73\n%s", code, a.errors())
	}
	if !strings.Contains(a.errors(), "lost the lock") {
		t.Errorf("the frozen step must say it lost the lock:\n%s", a.errors())
	}
	if now := resourceVersions(t, ns); fmt.Sprint(now) != fmt.Sprint(after) {
		t.Errorf("the frozen step wrote after it was continued:\n%v\n%v", after, now)
	}
	if e := newestEntry(t); e.ID != entry.ID || e.State != journal.StateInEffect || len(e.Done) != len(entry.Done) {
		t.Errorf("the frozen step changed the journal: %+v, was %+v", e, entry)
	}
	if r := run(t, filepath.Join(binDir, "kubectl"), "-n", "istio-system", "get", "lease", engine.LockName); r.code == 0 {
		t.Errorf("the lease must be gone: the second operator released it, the frozen one never touches it")
	}
}

// testFaultApiserverPausedDuringAGate: the kube-apiserver stopped (SIGSTOP) for 10 s while a gate
// waits: the step continues once it answers again, or ends in a clean, resumable state; it never
// hangs past --timeout plus the request timeout.
func testFaultApiserverPausedDuringAGate(t *testing.T) {
	ensureNewRevision(t)
	ns := "e2e-pause"
	workloadNamespaces(t, "4s", []string{"web1", "web2"}, ns)
	pid := apiserverPID(t)
	args := []string{"migrate-ns", "--metrics=false", ns, "--to", "1-31", "--batch-size", "1", "--timeout", "2m", "-y"}
	start := time.Now()
	a := startPlugin(t, args...)
	waitStderr(t, a, 60*time.Second, "batch 1: restarted")
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Second)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	code := a.wait()
	took := time.Since(start)
	if limit := 2*time.Minute + 60*time.Second + 30*time.Second; took > limit {
		t.Errorf("the step took %s, past --timeout plus the request timeout (%s)", took, limit)
	}
	e := newestEntry(t)
	switch code {
	case 0:
		if e.State != journal.StateInEffect {
			t.Errorf("exit 0 with entry %+v", e)
		}
	case 73, 74, 130:
		// Signed is not in -o json; the states a rerun resumes are.
		switch e.State {
		case journal.StateCancelled, journal.StateIncomplete, journal.StateInterrupted, journal.StateRunning:
		default:
			t.Errorf("exit %d must leave a resumable entry: %+v", code, e)
		}
		leaseFree(t)
		if r := plugin(t, args...); r.code != 0 {
			t.Fatalf("the rerun after exit %d: exit %d\n%s", code, r.code, r.stderr)
		}
	default:
		t.Fatalf("exit %d after the apiserver's pause\n%s", code, a.errors())
	}
	t.Logf("exit %d after %s; stderr:\n%s", code, took.Round(time.Second), a.errors())
	eventually(t, 90*time.Second, ns+" on 1-31", onRevision(t, ns, "1-31"))
}

// apiserverPID finds the test bed's kube-apiserver.
func apiserverPID(t *testing.T) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, d := range entries {
		var pid int
		if _, err := fmt.Sscan(d.Name(), &pid); err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue
		}
		argv := strings.Split(string(cmd), "\x00")
		if filepath.Base(argv[0]) == "kube-apiserver" {
			return pid
		}
	}
	t.Fatal("no kube-apiserver process")
	return 0
}

// testFaultPlantedEntryIsNeverResumed: a ConfigMap shaped like the newest cancelled entry of the very
// command being run, written by someone who may write ConfigMaps in the Istio namespace, is never
// resumed nor signed: the step starts its own entry, and undo refuses the planted one.
func testFaultPlantedEntryIsNeverResumed(t *testing.T) {
	shortLease(t)
	ensureNewRevision(t)
	ns := "e2e-plant"
	workloadNamespaces(t, "1s", []string{"web"}, ns)
	args := []string{"migrate-ns", "--metrics=false", ns, "--to", "1-31", "-y"}
	if r := plugin(t, args...); r.code != 0 {
		t.Fatalf("migrate-ns: exit %d %s", r.code, r.stderr)
	}
	first := newestEntry(t)
	if u := plugin(t, "undo", first.ID, "-y"); u.code != 0 {
		t.Fatalf("undo: exit %d %s", u.code, u.stderr)
	}
	eventually(t, 60*time.Second, ns+" back on 1-30", onRevision(t, ns, "1-30"))
	id, err := strconv.Atoi(newestEntry(t).ID) // not fmt.Sscan: it reads "0014" as octal
	if err != nil {
		t.Fatal(err)
	}
	plantedID := fmt.Sprintf("%04d", id+1)
	// Its undo would label kube-system: what a planted entry is for.
	plant(t, map[string]any{"id": plantedID, "step": "migrate-ns", "command": first.Command, "state": "cancelled", "user": first.User,
		"objects": kubeSystemLabel("planted")}, map[string]any{journal.AnnotationSignature: strings.Repeat("0f", 32), journal.AnnotationSeq: "1"})
	plantedRV := kubectl(t, "-n", "istio-system", "get", "configmap", journal.NamePrefix+plantedID, "-o", "jsonpath={.metadata.resourceVersion}")

	r := plugin(t, args...)
	if r.code != 0 || strings.Contains(r.stderr, "resuming journal entry "+plantedID) {
		t.Fatalf("the same command with a planted entry newest: exit %d\n%s", r.code, r.stderr)
	}
	if rv := kubectl(t, "-n", "istio-system", "get", "configmap", journal.NamePrefix+plantedID, "-o", "jsonpath={.metadata.resourceVersion}"); rv != plantedRV {
		t.Errorf("the planted entry was written (signed or resumed): resourceVersion %s, was %s", rv, plantedRV)
	}
	own := newestEntry(t)
	if own.ID == plantedID || own.State != journal.StateInEffect {
		t.Errorf("the step must start its own entry: %+v", own)
	}
	if u := plugin(t, "undo", plantedID, "-y"); u.code != 65 || !strings.Contains(u.stderr, "not signed") {
		t.Errorf("undo of the planted entry: exit %d (want 65) %s", u.code, u.stderr)
	}
	if l := kubectl(t, "get", "namespace", "kube-system", "-o", "jsonpath={.metadata.labels.planted}"); l != "" {
		t.Errorf("the planted entry changed kube-system")
	}
	if u := plugin(t, "undo", own.ID, "-y"); u.code != 0 {
		t.Errorf("undo of its own entry: exit %d %s", u.code, u.stderr)
	}
}

// kubeSystemLabel is the objects of a planted entry whose undo would label kube-system.
func kubeSystemLabel(label string) []any {
	return []any{map[string]any{"ref": map[string]any{"version": "v1", "resource": "namespaces", "kind": "Namespace", "name": "kube-system"}, "existed": true,
		"state": map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "kube-system", "labels": map[string]any{label: "yes"}}}}}
}

// plant writes a ConfigMap shaped like a journal entry, as anyone who may write ConfigMaps in the
// Istio namespace could; it is deleted when the test ends.
func plant(t *testing.T, entry map[string]any, annotations map[string]any) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_ = json.NewEncoder(zw).Encode(entry)
	zw.Close()
	name := journal.NamePrefix + fmt.Sprint(entry["id"])
	md := map[string]any{"name": name, "namespace": "istio-system",
		"labels": map[string]any{journal.LabelJournal: "entry", journal.LabelStep: fmt.Sprint(entry["step"]), "app.kubernetes.io/managed-by": journal.ManagedBy}}
	if annotations != nil {
		md["annotations"] = annotations
	}
	cm := map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": md,
		"binaryData": map[string]any{"entry.json.gz": base64.StdEncoding.EncodeToString(buf.Bytes())}}
	b, _ := json.Marshal(cm)
	f := filepath.Join(t.TempDir(), "planted.json")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "create", "-f", f)
	t.Cleanup(func() { run(t, filepath.Join(binDir, "kubectl"), "-n", "istio-system", "delete", "configmap", name) })
}

// testFaultFiveStepsStartedTogether: five mutating steps started at once: one runs, four get the lock's
// code, and nothing of theirs is written.
func testFaultFiveStepsStartedTogether(t *testing.T) {
	shortLease(t)
	ensureNewRevision(t)
	var namespaces []string
	for i := 1; i <= 5; i++ {
		namespaces = append(namespaces, fmt.Sprintf("e2e-five-%d", i))
	}
	workloadNamespaces(t, "3s", []string{"web"}, namespaces...)
	before := map[string]map[string]string{}
	for _, ns := range namespaces {
		before[ns] = resourceVersions(t, ns)
	}
	entriesBefore := len(journalEntries(t))
	codes := make([]int, len(namespaces))
	steps := make([]*background, len(namespaces))
	var wg sync.WaitGroup
	for i, ns := range namespaces {
		steps[i] = startPlugin(t, "migrate-ns", "--metrics=false", ns, "--to", "1-31", "-y")
	}
	for i := range steps {
		wg.Add(1)
		go func(i int) { defer wg.Done(); codes[i] = steps[i].wait() }(i)
	}
	wg.Wait()
	ran := -1
	for i, c := range codes {
		switch {
		case c == 0 && ran < 0:
			ran = i
		case c == 73:
		default:
			t.Errorf("%s: exit %d, want one 0 and four 73\n%s", namespaces[i], c, steps[i].errors())
		}
	}
	if ran < 0 {
		t.Fatalf("no step ran: %v", codes)
	}
	for i, ns := range namespaces {
		if i == ran {
			continue
		}
		if now := resourceVersions(t, ns); fmt.Sprint(now) != fmt.Sprint(before[ns]) {
			t.Errorf("%s, refused, was changed:\n%v\n%v", ns, before[ns], now)
		}
	}
	if n := len(journalEntries(t)); n != entriesBefore+1 {
		t.Errorf("%d new journal entries, want 1", n-entriesBefore)
	}
	if u := plugin(t, "undo", "-y"); u.code != 0 {
		t.Errorf("undo: exit %d %s", u.code, u.stderr)
	}
}

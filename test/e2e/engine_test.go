//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
)

// workloadNamespaces makes namespaces on 1-30, each with the given Deployments (2 replicas, ready after
// delay), rolled out and SYNCED; they are deleted when the test ends.
func workloadNamespaces(t *testing.T, delay string, deployments []string, namespaces ...string) {
	t.Helper()
	t.Cleanup(func() {
		run(t, filepath.Join(binDir, "kubectl"), append([]string{"delete", "namespace", "--timeout=90s"}, namespaces...)...)
	})
	for _, ns := range namespaces {
		kubectl(t, "create", "namespace", ns)
		kubectl(t, "label", "namespace", ns, "istio.io/rev=1-30")
		for _, d := range deployments {
			kubectl(t, "-n", ns, "create", "deployment", d, "--image=registry.example/web:1", "--replicas=2")
			kubectl(t, "-n", ns, "patch", "deployment", d, "--type=merge", "-p",
				`{"spec":{"template":{"metadata":{"annotations":{"testbed.istio-upgrade.io/ready-delay":"`+delay+`"}}}}}`)
		}
	}
	for _, ns := range namespaces {
		for _, d := range deployments {
			kubectl(t, "-n", ns, "rollout", "status", "deployment/"+d, "--timeout=60s")
		}
		eventually(t, 60*time.Second, ns+" on 1-30", func() error { return checkProxiesOnInjectedRevision(t, ns) })
	}
}

// background starts `kubectl istio-upgrade ARGS`; stderr is readable while it runs.
type background struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr strings.Builder
	stdout strings.Builder
	// seen fires the first time stderr holds its pattern: a signal sent at once, not at the next poll.
	seen map[string]chan struct{}
}

func (b *background) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.stderr.Write(p)
	for pattern, ch := range b.seen {
		if strings.Contains(b.stderr.String(), pattern) {
			close(ch)
			delete(b.seen, pattern)
		}
	}
	return n, err
}

// on is closed as soon as stderr shows pattern (call it before the text can appear).
func (b *background) on(pattern string) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := make(chan struct{})
	if strings.Contains(b.stderr.String(), pattern) {
		close(ch)
		return ch
	}
	if b.seen == nil {
		b.seen = map[string]chan struct{}{}
	}
	b.seen[pattern] = ch
	return ch
}

func (b *background) errors() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stderr.String()
}

func startPlugin(t *testing.T, args ...string) *background {
	t.Helper()
	return start(t, false, args...)
}

// startPluginInGroup is startPlugin in a process group of its own, which the test signals whole as a
// terminal signals its foreground group on Ctrl-C.
func startPluginInGroup(t *testing.T, args ...string) *background {
	t.Helper()
	return start(t, true, args...)
}

func start(t *testing.T, group bool, args ...string) *background {
	t.Helper()
	b := &background{cmd: exec.Command(filepath.Join(binDir, "kubectl"), append([]string{"istio-upgrade"}, args...)...)}
	b.cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "PATH="+binDir+":"+os.Getenv("PATH"))
	b.cmd.Stdout, b.cmd.Stderr = &b.stdout, b
	if group {
		b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *background) wait() int {
	err := b.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return 0
}

func journalEntries(t *testing.T) []journal.Entry {
	t.Helper()
	var h struct {
		Entries []journal.Entry `json:"entries"`
	}
	mustJSON(t, plugin(t, "history", "-o", "json"), &h)
	return h.Entries
}

// testEngineLockSerialisesSteps: a second mutating step started while one runs is refused at once
// (exit 73) naming the holder, with nothing changed; read-only steps never wait for the lock.
func testEngineLockSerialisesSteps(t *testing.T) {
	ensureNewRevision(t)
	workloadNamespaces(t, "3s", []string{"web"}, "e2e-lock-a", "e2e-lock-b")
	a := startPlugin(t, "migrate-ns", "--metrics=false", "e2e-lock-a", "--to", "1-31", "-y")
	eventually(t, 30*time.Second, "lock held by the first step", func() error {
		r := run(t, filepath.Join(binDir, "kubectl"), "-n", "istio-system", "get", "lease", "istio-upgrade-lock", "-o", "jsonpath={.spec.holderIdentity}")
		if r.code != 0 || r.stdout == "" {
			return fmt.Errorf("no lease yet: %s", r.stderr)
		}
		return nil
	})
	before := resourceVersions(t, "e2e-lock-b")
	start := time.Now()
	r := plugin(t, "migrate-ns", "--metrics=false", "e2e-lock-b", "--to", "1-31", "-y")
	took := time.Since(start)
	if r.code != 73 || !strings.Contains(r.stderr, "migrate-ns e2e-lock-a") {
		t.Errorf("second step while the first runs: exit %d (want 73), stderr %q", r.code, r.stderr)
	}
	if took > 15*time.Second {
		t.Errorf("the refusal must come at once, took %s", took)
	}
	if after := resourceVersions(t, "e2e-lock-b"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the refused step changed e2e-lock-b:\n%v\n%v", before, after)
	}
	if s := plugin(t, "status", "-o", "json"); s.code != 0 {
		t.Errorf("status must not wait for the lock: exit %d", s.code)
	}
	if code := a.wait(); code != 0 {
		t.Fatalf("first step: exit %d\n%s", code, a.errors())
	}
	if r := run(t, filepath.Join(binDir, "kubectl"), "-n", "istio-system", "get", "lease", "istio-upgrade-lock"); r.code == 0 {
		t.Errorf("the lock must be released when the step ends")
	}
	if r := plugin(t, "migrate-ns", "--metrics=false", "e2e-lock-b", "--to", "1-31", "-y"); r.code != 0 {
		t.Errorf("after the first step the second runs: exit %d %s", r.code, r.stderr)
	}
}

// testEngineCancelResumeUndo: SIGINT during a migrate-ns batch finishes that batch and stops (exit 130);
// history shows the entry cancelled with what was done; the same command again resumes and completes
// the same entry; one undo restores all of it.
func testEngineCancelResumeUndo(t *testing.T) {
	ensureNewRevision(t)
	workloadNamespaces(t, "2s", []string{"web1", "web2", "web3"}, "e2e-sig")
	args := []string{"migrate-ns", "--metrics=false", "e2e-sig", "--to", "1-31", "--batch-size", "1", "-y"}
	b := startPlugin(t, args...)
	eventually(t, 60*time.Second, "first batch under way", func() error {
		if !strings.Contains(b.errors(), "batch 1: restarted") {
			return fmt.Errorf("stderr so far: %q", b.errors())
		}
		return nil
	})
	if err := b.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := b.wait(); code != 130 {
		t.Fatalf("after SIGINT: exit %d, want 130\n%s", code, b.errors())
	}
	entries := journalEntries(t)
	e := entries[len(entries)-1]
	if e.Status() != journal.StateCancelled || e.Step != "migrate-ns" {
		t.Fatalf("history must show the entry cancelled: %+v", e)
	}
	restarted := 0
	for _, d := range e.Done {
		if strings.Contains(d, "restarted") {
			restarted++
		}
	}
	if restarted == 0 || restarted == 3 {
		t.Errorf("cancelled entry must record the batch it finished, not all: %v", e.Done)
	}
	if strings.Contains(b.errors(), "batch 1: gate passed") == false {
		t.Errorf("the batch in flight must be finished (gated) before stopping:\n%s", b.errors())
	}

	if r := plugin(t, args...); r.code != 0 {
		t.Fatalf("rerun: exit %d %s", r.code, r.stderr)
	}
	after := journalEntries(t)
	last := after[len(after)-1]
	if len(after) != len(entries) || last.ID != e.ID || last.Status() != journal.StateInEffect {
		t.Errorf("the rerun must resume entry %s and complete it; newest is %+v (%d entries, were %d)", e.ID, last, len(after), len(entries))
	}
	eventually(t, 60*time.Second, "e2e-sig on 1-31", func() error {
		for p, rev := range injectedPods(t, "e2e-sig") {
			if rev != "1-31" {
				return fmt.Errorf("%s on %s", p, rev)
			}
		}
		return nil
	})

	if u := plugin(t, "undo", "-y"); u.code != 0 {
		t.Fatalf("undo: exit %d %s", u.code, u.stderr)
	}
	if l := kubectl(t, "get", "namespace", "e2e-sig", "-o", "jsonpath={.metadata.labels.istio\\.io/rev}"); l != "1-30" {
		t.Errorf("label after undo %q, want 1-30", l)
	}
	eventually(t, 60*time.Second, "e2e-sig back on 1-30", func() error {
		for p, rev := range injectedPods(t, "e2e-sig") {
			if rev != "1-30" {
				return fmt.Errorf("%s on %s", p, rev)
			}
		}
		return checkProxiesOnInjectedRevision(t, "e2e-sig")
	})
}

// testEngineYesOnEveryMutatingStep: a shell runbook can pass -y to all six mutating steps.
func testEngineYesOnEveryMutatingStep(t *testing.T) {
	ensureNewRevision(t)
	gw := []string{"--gateway", "istio-ingress/istio-ingressgateway", "--revision", "1-31"}
	for _, args := range [][]string{
		append([]string{"canary-gw"}, gw...),
		append([]string{"shift", "--weight", "0"}, gw...),
		{"migrate-ns", "--metrics=false", "bookinfo", "--to", "1-31"},
		{"tag-move", "e2e-yes", "--to", "1-31"},
		{"cleanup", "--revision", "1-30"},
		{"undo"},
	} {
		r := plugin(t, append(args, "-y", "--dry-run=client")...)
		if r.code == 64 || strings.Contains(r.stderr, "unknown") {
			t.Errorf("%s -y: exit %d %s", args[0], r.code, r.stderr)
		}
	}
}

// testEngineTokenNeverRecorded: credentials given on the command line appear nowhere in the journal.
func testEngineTokenNeverRecorded(t *testing.T) {
	ensureNewRevision(t)
	kubectl(t, "-n", "default", "create", "serviceaccount", "e2e-admin")
	kubectl(t, "create", "clusterrolebinding", "e2e-admin", "--clusterrole=cluster-admin", "--serviceaccount=default:e2e-admin")
	t.Cleanup(func() {
		run(t, filepath.Join(binDir, "kubectl"), "delete", "clusterrolebinding", "e2e-admin")
		run(t, filepath.Join(binDir, "kubectl"), "-n", "default", "delete", "serviceaccount", "e2e-admin")
		run(t, filepath.Join(binDir, "kubectl"), "delete", "namespace", "e2e-token", "--timeout=60s")
	})
	token := kubectl(t, "-n", "default", "create", "token", "e2e-admin")
	kubectl(t, "create", "namespace", "e2e-token")
	kubectl(t, "label", "namespace", "e2e-token", "istio.io/rev=1-30")
	r := plugin(t, "migrate-ns", "--metrics=false", "e2e-token", "--to", "1-31", "-y", "--token", token)
	if r.code != 0 {
		t.Fatalf("migrate-ns with --token: exit %d %s", r.code, r.stderr)
	}
	h := plugin(t, "history", "-o", "json")
	entries := journalEntries(t)
	last := entries[len(entries)-1]
	if strings.Contains(h.stdout, token) || strings.Contains(last.Command, "--token") || !strings.Contains(last.Command, "migrate-ns e2e-token --metrics=false --to=1-31") {
		t.Errorf("the journal must record the command without credentials: %q", last.Command)
	}
	if u := plugin(t, "undo", "-y"); u.code != 0 {
		t.Errorf("undo: exit %d %s", u.code, u.stderr)
	}
}

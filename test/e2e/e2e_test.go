//go:build e2e

// Package e2e runs the built plugin through a real `kubectl istio-upgrade …` against the test bed
// (a real apiserver, KWOK nodes, real istiod processes). `make e2e` brings the test bed up first.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	testbedDir string
	kubeconfig string
	binDir     string
)

func TestMain(m *testing.M) {
	testbedDir = os.Getenv("TESTBED_DIR")
	if testbedDir == "" {
		testbedDir, _ = filepath.Abs("../../.testbed")
	}
	kubeconfig = filepath.Join(testbedDir, "kubeconfig")
	binDir = filepath.Join(testbedDir, "bin")
	if _, err := os.Stat(kubeconfig); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: no test bed at %s (run `make e2e`, or `make testbed-up` first): %v\n", testbedDir, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

type result struct {
	stdout, stderr string
	code           int
}

// run executes a command from the test bed's bin directory, as a user with `make testbed-env` would.
func run(t *testing.T, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "PATH="+binDir+":"+os.Getenv("PATH"))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return result{out.String(), errOut.String(), code}
}

// plugin runs `kubectl istio-upgrade ARGS` (kubectl finds kubectl-istio_upgrade on PATH).
func plugin(t *testing.T, args ...string) result {
	t.Helper()
	return run(t, filepath.Join(binDir, "kubectl"), append([]string{"istio-upgrade"}, args...)...)
}

// onTerminal runs `kubectl istio-upgrade ARGS` on a pseudo-terminal (util-linux script) typing answer,
// as a person would; stdout and stderr arrive together in stdout.
func onTerminal(t *testing.T, answer string, args ...string) result {
	t.Helper()
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("no `script` (util-linux) for a pseudo-terminal")
	}
	line := filepath.Join(binDir, "kubectl") + " istio-upgrade " + strings.Join(args, " ")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "script", "-qec", line, "/dev/null")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "PATH="+binDir+":"+os.Getenv("PATH"))
	cmd.Stdin = strings.NewReader(answer)
	out, err := cmd.Output()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("script %s: %v", line, err)
	}
	return result{stdout: string(out), code: code}
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return mustRun(t, "kubectl", args...)
}

// mustRun runs a tool of the test bed's bin directory and fails the test unless it exits 0.
func mustRun(t *testing.T, tool string, args ...string) string {
	t.Helper()
	r := run(t, filepath.Join(binDir, tool), args...)
	if r.code != 0 {
		t.Fatalf("%s %v: exit %d: %s", tool, args, r.code, r.stderr)
	}
	return r.stdout
}

func mustJSON(t *testing.T, r result, v any) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, r.stdout)
	}
}

// eventually retries f until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %v", what, timeout, err)
		}
		time.Sleep(time.Second)
	}
}

type statusDoc struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Revisions  []struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		Ready   int    `json:"ready"`
		Default bool   `json:"default"`
	} `json:"revisions"`
	Namespaces []struct {
		Name     string `json:"name"`
		Revision string `json:"revision"`
		Via      string `json:"via"`
	} `json:"namespaces"`
	Proxies []struct {
		Pod, Namespace, Istiod, Revision, Version, State, Type string
	} `json:"proxies"`
	Gateways []struct {
		Namespace, Name, Revision string
		GatewayAPI                string `json:"gatewayAPI"`
	} `json:"gateways"`
	Warnings []string `json:"warnings"`
}

func status(t *testing.T, args ...string) statusDoc {
	t.Helper()
	var d statusDoc
	mustJSON(t, plugin(t, append([]string{"status", "--proxies", "-o", "json"}, args...)...), &d)
	return d
}

// injectedPods lists running pods with a sidecar: ns/name → injected revision.
func injectedPods(t *testing.T, namespace string) map[string]string {
	t.Helper()
	scope := []string{"-A"}
	if namespace != "" {
		scope = []string{"-n", namespace}
	}
	out := kubectl(t, append([]string{"get", "pods", "--field-selector=status.phase=Running", "-o", "json"}, scope...)...)
	var l struct {
		Items []struct {
			Metadata struct {
				Name, Namespace   string
				DeletionTimestamp *string
				Annotations       map[string]string
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatal(err)
	}
	pods := map[string]string{}
	for _, p := range l.Items {
		raw, ok := p.Metadata.Annotations["sidecar.istio.io/status"]
		if !ok || p.Metadata.DeletionTimestamp != nil {
			continue
		}
		var st struct{ Revision string }
		_ = json.Unmarshal([]byte(raw), &st)
		pods[p.Metadata.Namespace+"/"+p.Metadata.Name] = st.Revision
	}
	return pods
}

// istioctlProxies parses the real `istioctl proxy-status` table: pod.ns → istiod.
func istioctlProxies(t *testing.T, istioctl, revision string) (map[string]string, error) {
	t.Helper()
	r := run(t, filepath.Join(binDir, istioctl), "proxy-status", "--revision", revision)
	if r.code != 0 {
		return nil, fmt.Errorf("%s proxy-status: exit %d: %s", istioctl, r.code, r.stderr)
	}
	out := map[string]string{}
	for _, line := range strings.Split(r.stdout, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 3 {
			out[f[0]] = f[2]
		}
	}
	return out, nil
}

// istioctlOf is the istioctl of each revision's version on either profile.
var istioctlOf = map[string]string{"1-30": "istioctl-old", "1-31": "istioctl-new", "default": "istioctl-old", "canary": "istioctl-new"}

// istiodPodPrefix: pods of the non-revisioned istiod are istiod-<hash>, the others istiod-<rev>-<hash>.
func istiodPodPrefix(rev string) string {
	if rev == "default" {
		return "istiod-"
	}
	return "istiod-" + rev + "-"
}

// checkProxiesOnInjectedRevision: every injected running pod is SYNCED on an istiod of the revision
// that injected it, in our status AND in the real istioctl of that revision.
func checkProxiesOnInjectedRevision(t *testing.T, namespace string) error {
	pods := injectedPods(t, namespace)
	if len(pods) == 0 {
		return fmt.Errorf("no injected pods")
	}
	d := status(t)
	ours := map[string]string{}
	for _, p := range d.Proxies {
		if p.State == "SYNCED" {
			ours[p.Namespace+"/"+p.Pod] = p.Revision
		}
	}
	real := map[string]map[string]string{}
	for _, rev := range pods {
		if real[rev] != nil {
			continue
		}
		istioctl := istioctlOf[rev]
		if istioctl == "" {
			return fmt.Errorf("unexpected revision %q", rev)
		}
		m, err := istioctlProxies(t, istioctl, rev)
		if err != nil {
			return err
		}
		real[rev] = m
	}
	for pod, rev := range pods {
		if ours[pod] != rev {
			return fmt.Errorf("%s injected by %s: status --proxies says %q", pod, rev, ours[pod])
		}
		ns, name, _ := strings.Cut(pod, "/")
		istiod := real[rev][name+"."+ns]
		if !strings.HasPrefix(istiod, istiodPodPrefix(rev)) {
			return fmt.Errorf("%s injected by %s: istioctl proxy-status --revision %s lists it on %q", pod, rev, rev, istiod)
		}
	}
	return nil
}

func revisionInstalled(d statusDoc, rev string) bool {
	for _, r := range d.Revisions {
		if r.Name == rev {
			return true
		}
	}
	return false
}

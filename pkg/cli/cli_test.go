package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// One meaning per code: no code listed twice, each explained, in ascending order (the docs table).
func TestExitCodeTable(t *testing.T) {
	seen := map[ExitCode]bool{}
	for i, row := range ExitCodes {
		if seen[row.Code] || row.Meaning == "" || row.Name == "" || (i > 0 && row.Code <= ExitCodes[i-1].Code) {
			t.Errorf("row %+v: duplicate, unexplained, or out of order", row)
		}
		seen[row.Code] = true
	}
}

func TestCodeOf(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, "x", errors.New("no"))
	cases := []struct {
		err  error
		want ExitCode
	}{
		{nil, ExitOK},
		{errors.New("boom"), ExitError},
		{UsageErrorf("bad"), ExitUsage},
		{BadInputf("no such revision"), ExitBadInput},
		{Errorf(ExitGateFailed, "gate"), ExitGateFailed},
		{fmt.Errorf("wrapped: %w", Errorf(ExitPrecheck, "blocked")), ExitPrecheck},
		{forbidden, ExitNotPermitted},
		{fmt.Errorf("list: %w", forbidden), ExitNotPermitted},
		{context.DeadlineExceeded, ExitTimeout},
		{fmt.Errorf("gate: %w", &kube.RolloutFailed{Err: errors.New("exceeded its progress deadline")}), ExitGateFailed},
		{fmt.Errorf("undo: %w", &journal.DriftError{Why: "changed"}), ExitDrifted},
	}
	for _, c := range cases {
		if got := CodeOf(c.err); got != c.want {
			t.Errorf("CodeOf(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

func testRoot() (*cobra.Command, *bytes.Buffer, *bytes.Buffer) {
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	ok := func(name string) CommandFactory {
		return func(*Global, genericiooptions.IOStreams) *cobra.Command {
			return &cobra.Command{Use: name, Short: name, Args: NoArgs, RunE: func(*cobra.Command, []string) error { return nil }}
		}
	}
	fails := func(name string) CommandFactory {
		return func(*Global, genericiooptions.IOStreams) *cobra.Command {
			return &cobra.Command{Use: name, Short: name, RunE: func(*cobra.Command, []string) error { return Errorf(ExitError, "%s failed", name) }}
		}
	}
	root := NewRootCommand(streams, ok("status"), fails("precheck"))
	return root, out, errOut
}

func run(args ...string) (int, string, string) {
	root, out, errOut := testRoot()
	root.SetArgs(args)
	code := Execute(root)
	return code, out.String(), errOut.String()
}

func TestRootExitCodes(t *testing.T) {
	cases := []struct {
		args []string
		want int
	}{
		{[]string{"status"}, 0},
		{[]string{"status", "--bogus"}, 64},
		{[]string{"status", "extra-arg"}, 64},
		{[]string{"no-such-command"}, 64},
		{[]string{"precheck"}, 1},
		{[]string{"version", "--client", "-o", "json"}, 0},
		{[]string{"version", "--client", "-o", "xml"}, 64},
		{[]string{"status", "--dry-run"}, 64},
	}
	for _, c := range cases {
		code, _, errOut := run(c.args...)
		if code != c.want {
			t.Errorf("%v: exit %d, want %d (stderr %q)", c.args, code, c.want, errOut)
		}
		if code != 0 && strings.Count(errOut, "error: ") != 1 {
			t.Errorf("%v: stderr should hold exactly one error line: %q", c.args, errOut)
		}
	}
}

func TestVersionClientJSONOnly(t *testing.T) {
	code, out, _ := run("version", "--client", "-o", "json")
	if code != 0 || !strings.HasPrefix(out, "{") || !strings.Contains(out, `"kind": "Version"`) || strings.Contains(out, "controlPlanes") {
		t.Errorf("version --client -o json: exit %d, %q", code, out)
	}
}

func TestGlobalValidate(t *testing.T) {
	cases := []struct {
		g    Global
		want bool
	}{
		{Global{Output: "table", IstioNamespace: "istio-system"}, true},
		{Global{Output: "json", IstioNamespace: "istio-system"}, true},
		{Global{Output: "wide", IstioNamespace: "istio-system"}, false},
		{Global{Output: "table", IstioNamespace: ""}, false},
		{Global{Output: "table", IstioNamespace: "x", Plaintext: true}, false},
		{Global{Output: "table", IstioNamespace: "x", Plaintext: true, XDSAddress: "localhost:15010"}, true},
	}
	for _, c := range cases {
		err := c.g.Validate()
		if (err == nil) != c.want || (err != nil && CodeOf(err) != ExitUsage) {
			t.Errorf("%+v: err %v, want ok=%v and usage errors", c.g, err, c.want)
		}
	}
}

func TestParseDryRun(t *testing.T) {
	for _, s := range []string{"none", "client", "server"} {
		if _, err := ParseDryRun(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	if _, err := ParseDryRun("true"); CodeOf(err) != ExitUsage {
		t.Errorf("dry-run=true should be a usage error, got %v", err)
	}
	if DryRunServer.APIDryRun()[0] != "All" || DryRunClient.APIDryRun() != nil {
		t.Error("APIDryRun")
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTable(&b, []string{"name", "revision"}, [][]string{{"a b", ""}, {"c", "1-30"}}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[1], "a_b") || !strings.Contains(lines[1], "<none>") {
		t.Errorf("table:\n%s", b.String())
	}
	if strings.ContainsAny(b.String(), "|+") {
		t.Errorf("table has borders:\n%s", b.String())
	}
}

func TestNamespaceScope(t *testing.T) {
	ns, empty := "shop", ""
	cases := []struct {
		flag *string
		all  bool
		want string
		ok   bool
	}{
		{&empty, false, "", true},
		{&ns, false, "shop", true},
		{&empty, true, "", true},
		{&ns, true, "", false},
		{nil, false, "", true},
	}
	for _, c := range cases {
		g := &Global{ConfigFlags: genericclioptions.NewConfigFlags(true)}
		g.ConfigFlags.Namespace = c.flag
		got, err := g.NamespaceScope(c.all)
		if got != c.want || (err == nil) != c.ok || (err != nil && CodeOf(err) != ExitUsage) {
			t.Errorf("%+v: %q %v", c, got, err)
		}
	}
}

func TestAskWithin(t *testing.T) {
	defer func(f func(io.Reader) bool) { isTerminal = f }(isTerminal)
	tests := []struct {
		name     string
		tty      bool
		answer   io.Reader
		yes      bool
		asked    bool
		timedOut bool
	}{
		{"no terminal goes on without asking", false, strings.NewReader(""), false, false, false},
		{"yes at a terminal", true, strings.NewReader("y\n"), true, true, false},
		{"YES at a terminal", true, strings.NewReader("YES\n"), true, true, false},
		{"no at a terminal", true, strings.NewReader("n\n"), false, true, false},
		{"empty answer is no", true, strings.NewReader("\n"), false, true, false},
		{"end of input is no", true, strings.NewReader(""), false, true, false},
		{"nobody answers: gives up, never a yes", true, blocked{}, false, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isTerminal = func(io.Reader) bool { return tt.tty }
			var errOut bytes.Buffer
			yes, asked, timedOut := AskWithin(tt.answer, &errOut, "Delete 3 objects?", 50*time.Millisecond)
			if yes != tt.yes || asked != tt.asked || timedOut != tt.timedOut {
				t.Errorf("AskWithin = %v %v %v, want %v %v %v", yes, asked, timedOut, tt.yes, tt.asked, tt.timedOut)
			}
			if shown := strings.Contains(errOut.String(), "Delete 3 objects? [y/N]"); shown != tt.asked {
				t.Errorf("question shown = %v (%q), want %v", shown, errOut.String(), tt.asked)
			}
		})
	}
}

// Ctrl-C at the prompt ends the wait at once, never as a yes.
func TestAskUntilStops(t *testing.T) {
	defer func(f func(io.Reader) bool) { isTerminal = f }(isTerminal)
	isTerminal = func(io.Reader) bool { return true }
	stop := make(chan struct{})
	time.AfterFunc(20*time.Millisecond, func() { close(stop) })
	var errOut bytes.Buffer
	yes, asked, timedOut, stopped := AskUntil(blocked{}, &errOut, "Go on?", time.Hour, stop)
	if yes || !asked || timedOut || !stopped {
		t.Errorf("AskUntil = %v %v %v %v, want asked and stopped, not yes", yes, asked, timedOut, stopped)
	}
}

// blocked is a terminal nobody types into.
type blocked struct{}

func (blocked) Read([]byte) (int, error) { select {} }

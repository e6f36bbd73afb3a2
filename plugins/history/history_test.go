package history

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal/journaltest"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/step"
)

// The entries the tests write are migrate-ns's: journal trust knows its kinds from the registry.
func TestMain(m *testing.M) {
	step.Register([]step.Registration{{Name: "migrate-ns", Kinds: []string{"Namespace", "Deployment"}}})
	os.Exit(m.Run())
}

func runHistory(t *testing.T, c *journaltest.Cluster, output string, args ...string) (string, string, error) {
	t.Helper()
	g := &cli.Global{ConfigFlags: genericclioptions.NewConfigFlags(true), IstioNamespace: "istio-system", Output: output}
	g.SetClients(c.Clients)
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	cmd := NewCommand(g, streams)
	cmd.SetArgs(args)
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func saveEntry(t *testing.T, c *journaltest.Cluster, state, holder string, at time.Time) *journal.Entry {
	t.Helper()
	rec := c.Journal.Begin("migrate-ns", "kubectl istio-upgrade migrate-ns shop --to=1-31")
	rec.Entry().State, rec.Entry().Holder, rec.Entry().Time = state, holder, at
	if err := rec.Save(context.Background()); err != nil {
		t.Fatal(err)
	}
	return rec.Entry()
}

func lease(holder string, renewed time.Time) *coordinationv1.Lease {
	at := metav1.NewMicroTime(renewed)
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: step.LockName, Namespace: "istio-system"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(holder), RenewTime: &at}}
}

// A running entry is shown as it stands: interrupted when its holder no longer holds the lock, "may be
// gone" when the lease stopped being renewed, running while its run renews.
func TestRunShowsInterruptedEntries(t *testing.T) {
	now := time.Now()
	for _, tt := range []struct {
		name  string
		lease *coordinationv1.Lease
		want  string
	}{
		{"its run renews the lock", lease("alice@a/1", now), "running "},
		{"the lock is not renewed", lease("alice@a/1", now.Add(-time.Minute)), "may be gone"},
		{"another run holds the lock", lease("bob@b/2", now), "interrupted"},
		{"nobody holds the lock", nil, "interrupted"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := journaltest.New(t)
			saveEntry(t, c, journal.StateRunning, "alice@a/1", now)
			if tt.lease != nil {
				if _, err := c.Clients.Kube.CoordinationV1().Leases("istio-system").Create(context.Background(), tt.lease, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			out, _, err := runHistory(t, c, cli.OutputTable)
			if err != nil || !strings.Contains(out, tt.want) {
				t.Errorf("history: %v, want %q in\n%s", err, tt.want, out)
			}
		})
	}
}

// --prune removes entries neither among the newest --keep nor younger than --older-than, after
// listing them; a client dry run only lists; without a rule it is a usage error.
func TestRunPrune(t *testing.T) {
	c := journaltest.New(t)
	old := time.Now().Add(-48 * time.Hour)
	for i := 0; i < 3; i++ {
		saveEntry(t, c, journal.StateInEffect, "", old)
	}
	saveEntry(t, c, journal.StateInEffect, "", time.Now())
	if _, _, err := runHistory(t, c, cli.OutputTable, "--prune"); cli.CodeOf(err) != cli.ExitUsage {
		t.Errorf("--prune without a rule: %v, want exit 64", err)
	}
	out, _, err := runHistory(t, c, cli.OutputTable, "--prune", "--keep", "2", "--dry-run=client")
	if err != nil || !strings.Contains(out, "0001") || !strings.Contains(out, "0002") || strings.Contains(out, "0003") || !strings.Contains(out, "would be removed") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if l, _ := c.Journal.List(context.Background()); len(l) != 4 {
		t.Fatalf("a dry run removed entries: %d left", len(l))
	}
	if _, _, err := runHistory(t, c, cli.OutputTable, "--prune", "--older-than", "24h", "--keep", "3", "-y"); err != nil {
		t.Fatal(err)
	}
	l, _ := journal.New(c.Clients.Kube, c.Clients.Dynamic, "istio-system").List(context.Background())
	if len(l) != 3 || l[0].ID != "0002" {
		t.Errorf("after pruning to 3: %+v", l)
	}
	// The pruned entry's sequence number is forgotten; the rest still verify.
	for _, e := range l {
		if journal.Trusted(e) != nil {
			t.Errorf("entry %s no longer verifies: %v", e.ID, journal.Trusted(e))
		}
	}
}

// An entry's fields reach the terminal without their control characters (a planted entry's escape
// sequences print as \x1b), and an old entry's raw arguments without the credentials they held, in
// the table and in -o json.
func TestRunPrintsEntriesSafely(t *testing.T) {
	c := journaltest.New(t)
	rec := c.Journal.Begin("migrate-ns", "kubectl istio-upgrade migrate-ns \x1b]0;owned\x07shop --to=1-31")
	rec.Entry().User = "mallory\x1b[2J"
	rec.Entry().Args = []string{"kubectl-istio_upgrade", "migrate-ns", "--token", "s3cret-token"}
	if err := rec.Save(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{nil, {rec.Entry().ID}} {
		out, _, err := runHistory(t, c, cli.OutputTable, args...)
		if err != nil || strings.ContainsRune(out, '\x1b') || strings.ContainsRune(out, '\x07') || !strings.Contains(out, `\x1b`) {
			t.Errorf("history %v: %v, control characters printed raw or not shown escaped:\n%q", args, err, out)
		}
	}
	out, _, err := runHistory(t, c, cli.OutputJSON)
	if err != nil || strings.Contains(out, "s3cret-token") || !strings.Contains(out, journal.Redacted) {
		t.Errorf("history -o json: %v, the old entry's token is shown:\n%s", err, out)
	}
}

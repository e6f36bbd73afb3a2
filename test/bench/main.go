// Command bench runs the benchmark scenarios of docs/benchmarks.md on a running test bed (make bench):
// migration speed against the Kubernetes limit and the runbook loop, apiserver load, reading the mesh
// against istioctl, the binary, and diff at scale. It prints one table and writes it as Markdown.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

type row struct {
	scenario, figure, value, spread, note string
}

type bench struct {
	c          *kube.Clients
	bin        string // test bed bin dir: kubectl, istioctl-new, kubectl-istio_upgrade
	kubeconfig string
	rows       []row
	failed     []string
	revs       [2]string
}

func main() {
	var (
		kubeconfig = flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "test bed kubeconfig")
		bin        = flag.String("bin", "", "test bed bin directory")
		nsN        = flag.Int("namespaces", 3, "fleet namespaces (N)")
		depM       = flag.Int("deployments", 3, "Deployments per namespace (M)")
		loopN      = flag.Int("loop-namespaces", 0, "namespaces of the runbook loop's fleet (0: N); the sequential loop takes minutes per 10 workloads, so large runs give it fewer (its figures are per workload)")
		runs       = flag.Int("runs", 3, "runs per timed figure")
		proxies    = flag.String("proxies", "2000", "simulated proxies for the mesh-reading scenario: one count or several, ascending (2000,5000)")
		readRuns   = flag.Int("read-runs", 5, "runs per timed figure of the mesh-reading scenario")
		out        = flag.String("out", "docs/benchmarks.md", "Markdown file to write the table to")
		only       = flag.String("only", "", "comma-separated scenarios to run (1,3,4,5,7); empty = all")
		ambient    = flag.Bool("ambient", false, "scenario 6 only, on the ambient test bed: its rows are added to -out's table")
	)
	flag.Parse()
	cf := genericclioptions.NewConfigFlags(true)
	cf.KubeConfig = kubeconfig
	c, err := kube.NewClients(cf)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	b := &bench{c: c, bin: *bin, kubeconfig: *kubeconfig, revs: [2]string{"1-30", "1-31"}}
	want := func(s string) bool { return *only == "" || strings.Contains(","+*only+",", ","+s+",") }
	ctx := context.Background()
	start := time.Now()
	if *ambient {
		b.guard(ambientScenario, func() error { return b.ztunnelRoll(ctx, *runs) })
		for _, r := range b.rows {
			fmt.Printf("| %s | %s | %s | %s | %s |\n", r.scenario, r.figure, r.value, r.spread, r.note)
		}
		if len(b.failed) == 0 && *out != "" {
			if err := appendRows(*out, b.rows); err != nil {
				b.failed = append(b.failed, err.Error())
			}
		}
		if len(b.failed) > 0 {
			fmt.Fprintf(os.Stderr, "bench: %s\n", strings.Join(b.failed, "\n  "))
			os.Exit(1)
		}
		return
	}
	if want("1") {
		ln := *loopN
		if ln <= 0 || ln > *nsN {
			ln = *nsN
		}
		b.guard("1-2 migration", func() error { return b.migration(ctx, *nsN, *depM, ln, *runs) })
		if want("3") {
			// The mesh-reading sizes are the proxies it adds: the fleets (1,890 pods at 300 workloads) go first.
			b.guard("1-2 migration: removing the fleets", func() error { return b.removeFleets(ctx) })
		}
	}
	if want("3") {
		for _, n := range counts(*proxies) {
			b.guard(fmt.Sprintf("3 reading the mesh (%d proxies)", n), func() error { return b.reading(ctx, n, *readRuns) })
		}
	}
	if want("4") {
		b.guard("4 binary", b.binary)
	}
	if want("5") {
		b.guard("5 diff", b.diff)
	}
	if want("7") {
		b.guard(requestScenario, func() error { return b.requestGate(ctx, *runs) })
	}
	table := b.markdown(*nsN, *depM, *proxies, *runs, *readRuns, time.Since(start))
	fmt.Print(table)
	switch {
	case *out == "" || len(b.failed) > 0 && *only != "":
	case *only == "":
		if err := writeTable(*out, table); err != nil {
			b.failed = append(b.failed, err.Error())
		}
	default: // one size measured again: its rows replace the old ones
		bed := ""
		if !want("1") {
			bed = ", no fleets on the bed"
		}
		note := fmt.Sprintf("- Measured again, scenarios %s: on %s with %s simulated proxies (%d runs each%s); that run took %s.",
			*only, time.Now().UTC().Format("2006-01-02"), *proxies, *readRuns, bed, time.Since(start).Round(time.Second))
		if !want("3") { // no mesh-reading size measured: the proxies and read runs say nothing
			note = fmt.Sprintf("- Measured again, scenarios %s: on %s, %d runs each%s; that run took %s.",
				*only, time.Now().UTC().Format("2006-01-02"), *runs, bed, time.Since(start).Round(time.Second))
		}
		err := appendRows(*out, b.rows)
		if err == nil {
			err = noteRun(*out, note)
		}
		if err != nil {
			b.failed = append(b.failed, err.Error())
		}
	}
	if len(b.failed) > 0 {
		fmt.Fprintf(os.Stderr, "bench: %d scenarios failed:\n  %s\n", len(b.failed), strings.Join(b.failed, "\n  "))
		os.Exit(1)
	}
}

// Markers around the generated part of the output file: text outside them (how to read the figures,
// what profiling changed) is kept.
const beginMark, endMark = "<!-- make bench: begin -->", "<!-- make bench: end -->"

func writeTable(path, table string) error {
	old, err := os.ReadFile(path)
	text := string(old)
	i, j := strings.Index(text, beginMark), strings.Index(text, endMark)
	if err != nil || i < 0 || j < i {
		return os.WriteFile(path, []byte(beginMark+"\n"+table+endMark+"\n"), 0o644)
	}
	return os.WriteFile(path, []byte(text[:i]+beginMark+"\n"+table+text[j:]), 0o644)
}

func (b *bench) guard(name string, f func() error) {
	logf("scenario %s", name)
	if err := f(); err != nil {
		logf("scenario %s FAILED: %v", name, err)
		b.failed = append(b.failed, name+": "+err.Error())
	}
}

func (b *bench) add(scenario, figure, value, spread, note string) {
	b.rows = append(b.rows, row{scenario, figure, value, spread, note})
	logf("  %s: %s %s %s", figure, value, spread, note)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// ---- scenario 1 and 2: migration speed and apiserver load ----

const fleetLabel = "bench-fleet"

func (b *bench) fleet(ctx context.Context, name string, n, m int, rev string) ([]kube.WorkloadRef, error) {
	var refs []kube.WorkloadRef
	for i := 0; i < n; i++ {
		ns := fmt.Sprintf("bench-%s-%d", name, i)
		_, err := b.c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
			Labels: map[string]string{"istio.io/rev": rev, fleetLabel: name}}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
		for j := 0; j < m; j++ {
			d := deployment(ns, fmt.Sprintf("app-%d", j), 3, "2s")
			if _, err := b.c.Kube.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return nil, err
			}
			refs = append(refs, kube.WorkloadRef{Kind: "Deployment", Namespace: ns, Name: d.Name})
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	return refs, kube.WaitRollouts(wctx, b.c.Kube, refs, nil)
}

// deployment is a fleet workload: maxUnavailable 0, maxSurge 1, readiness delayed by the test bed.
func deployment(ns, name string, replicas int32, readyDelay string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	zero, one := intstr.FromInt32(0), intstr.FromInt32(1)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &zero, MaxSurge: &one}},
			Template: corev1.PodTemplateSpec{
				// The injected proxy asks for 10m CPU instead of 100m, so 2,000 pods fit the test bed's 3 nodes.
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"testbed.istio-upgrade.io/ready-delay": readyDelay, "sidecar.istio.io/proxyCPU": "10m"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
			},
		},
	}
}

func (b *bench) migration(ctx context.Context, n, m, loopN, runs int) error {
	// The background rate of the bed before any fleet exists: what "quiet" means for every run below.
	// (Measured only between runs, it once took the tail of making the fleets, events still trickling
	// out at the controllers' rate limit for minutes, as background.)
	background, err := b.backgroundRate(ctx)
	if err != nil {
		return err
	}
	logf("background: %.1f requests/s (%s)", total(background), byVerb(background))
	fleets := map[string][]kube.WorkloadRef{}
	for _, f := range []string{"ours", "limit", "loop"} {
		fn := n
		if f == "loop" {
			fn = loopN
		}
		refs, err := b.fleet(ctx, f, fn, m, b.revs[0])
		if err != nil {
			return fmt.Errorf("fleet %s: %w", f, err)
		}
		fleets[f] = refs
	}
	workloads := n * m
	logf("fleets of %d namespaces x %d Deployments (the loop's %d namespaces; 3 replicas, 2 s readiness) ready on %s", n, m, loopN, b.revs[0])
	times := map[string][]float64{}
	load := map[string][]map[string]float64{}
	for r := 0; r < runs; r++ {
		to := b.revs[(r+1)%2] // each run migrates the fleets to the other revision
		for _, f := range []string{"ours", "limit", "loop"} {
			idle, err := b.quietRate(ctx, background)
			if err != nil {
				return err
			}
			before, err := b.requests(ctx)
			if err != nil {
				return err
			}
			t0 := time.Now()
			switch f {
			case "ours":
				err = b.run(b.plugin(), "migrate-ns", "-l", fleetLabel+"=ours", "--to", to, "--batch-size", strconv.Itoa(workloads),
					"--max-unavailable-namespaces", strconv.Itoa(n), "--timeout", "15m", "-y", "-o", "json")
			case "limit":
				err = b.limit(ctx, fleets[f], to)
			case "loop":
				err = b.loop(to)
			}
			took := time.Since(t0).Seconds()
			if err != nil {
				return fmt.Errorf("%s run %d: %w", f, r+1, err)
			}
			// What a run sets off and outlives it (old pods terminating, the new pods' proxies asking for
			// tokens, events) is its own load: counted in its figure, not in the next run's background
			// rate. Measured as that, it once made the loop, run after the limit, look cheaper, and the
			// first run after the fleets were made send no POST at all.
			if err := b.settle(ctx, f); err != nil {
				return err
			}
			if _, err := b.quietRate(ctx, background); err != nil {
				return err
			}
			secs := time.Since(t0).Seconds()
			after, err := b.requests(ctx)
			if err != nil {
				return err
			}
			moved := workloads
			if f == "loop" {
				moved = loopN * m
			}
			net := map[string]float64{}
			for verb, v := range after {
				net[verb] = max(0, v-before[verb]-idle[verb]*secs) / float64(moved)
			}
			times[f] = append(times[f], took)
			load[f] = append(load[f], net)
			logf("run %d %s -> %s: %.1fs (settled after %.1fs); requests per workload: %.1f (%s)", r+1, f, to, took, secs, total(net), byVerb(net))
		}
	}
	ours, limit, loop := median(times["ours"]), median(times["limit"]), median(times["loop"])
	b.add("1 migration", "`migrate-ns` wall time (gated, one batch)", secs(ours), spread(times["ours"]), fmt.Sprintf("%d workloads, %d pods restarted", workloads, workloads*3))
	b.add("1 migration", "limit: all rollouts at once, no gates", secs(limit), spread(times["limit"]), "same restarts, watched until complete")
	b.add("1 migration", "ratio to the limit", fmt.Sprintf("%.2f", ours/limit), "", "1.00 = no overhead over Kubernetes itself")
	loopNote := "label; rollout restart; rollout status per Deployment; verifies nothing"
	speedup := loop / ours
	if loopN != n {
		loopNote = fmt.Sprintf("%d workloads; ", loopN*m) + loopNote
		speedup = (loop / float64(loopN*m)) / (ours / float64(workloads)) // per workload
	}
	b.add("1 migration", "runbook loop (seed 001, sequential)", secs(loop), spread(times["loop"]), loopNote)
	b.add("1 migration", "speed-up over the runbook loop", fmt.Sprintf("%.1fx", speedup), "", map[bool]string{true: "per workload", false: ""}[loopN != n])
	for _, f := range []string{"ours", "limit", "loop"} {
		b.add("2 API load", "requests per migrated workload: "+map[string]string{"ours": "migrate-ns", "limit": "limit", "loop": "runbook loop"}[f],
			fmt.Sprintf("%.1f", total(medianLoad(load[f]))), "", byVerb(medianLoad(load[f])))
	}
	return nil
}

func (b *bench) plugin() string { return filepath.Join(b.bin, "kubectl-istio_upgrade") }

func (b *bench) run(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+b.kubeconfig, "PATH="+b.bin+":"+os.Getenv("PATH"))
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = nil, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", filepath.Base(name), strings.Join(args, " "), err, lastLines(stderr.String(), 5))
	}
	return nil
}

// removeFleets deletes the fleets' namespaces and waits until they are gone.
func (b *bench) removeFleets(ctx context.Context) error {
	sel := metav1.ListOptions{LabelSelector: fleetLabel}
	nss, err := b.c.Kube.CoreV1().Namespaces().List(ctx, sel)
	if err != nil {
		return err
	}
	for _, ns := range nss.Items {
		if err := b.c.Kube.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		l, err := b.c.Kube.CoreV1().Namespaces().List(ctx, sel)
		if err != nil {
			return err
		}
		if len(l.Items) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d fleet namespaces still there after 10 minutes", len(l.Items))
		}
		time.Sleep(2 * time.Second)
	}
}

// settle waits until no pod of fleet f is terminating.
func (b *bench) settle(ctx context.Context, f string) error {
	nss, err := b.c.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: fleetLabel + "=" + f})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for _, ns := range nss.Items {
		for {
			pods, err := b.c.Kube.CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			terminating := 0
			for _, p := range pods.Items {
				if p.DeletionTimestamp != nil {
					terminating++
				}
			}
			if terminating == 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("fleet %s: %d pods of %s still terminating", f, terminating, ns.Name)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	return nil
}

// limit relabels every namespace and restarts every Deployment at once, then waits for all rollouts.
func (b *bench) limit(ctx context.Context, refs []kube.WorkloadRef, to string) error {
	done := map[string]bool{}
	for _, r := range refs {
		if done[r.Namespace] {
			continue
		}
		done[r.Namespace] = true
		patch := fmt.Sprintf(`{"metadata":{"labels":{"istio.io/rev":%q}}}`, to)
		if _, err := b.c.Kube.CoreV1().Namespaces().Patch(ctx, r.Namespace, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return err
		}
	}
	now := time.Now()
	for _, r := range refs {
		if err := kube.Restart(ctx, b.c.Kube, r, now, nil); err != nil {
			return err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	return kube.WaitRollouts(wctx, b.c.Kube, refs, nil)
}

// loop is the runbook automation of seed 001, per Deployment and sequential.
func (b *bench) loop(to string) error {
	script := `set -e
for ns in $(kubectl get ns -l ` + fleetLabel + `=loop -o name | cut -d/ -f2); do
  kubectl label namespace "$ns" istio-injection- >/dev/null
  kubectl label namespace "$ns" istio.io/rev="$TO" --overwrite >/dev/null
  for d in $(kubectl get deployment -n "$ns" -o name); do
    kubectl rollout restart "$d" -n "$ns" >/dev/null
    kubectl rollout status "$d" -n "$ns" --timeout=300s >/dev/null
  done
done`
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+b.kubeconfig, "PATH="+b.bin+":"+os.Getenv("PATH"), "TO="+to)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("runbook loop: %v: %s", err, lastLines(string(out), 5))
	}
	return nil
}

var requestLine = regexp.MustCompile(`^apiserver_request_total\{(.*)\} ([0-9.e+]+)$`)
var verbLabel = regexp.MustCompile(`verb="([A-Z]+)"`)

// requests reads apiserver_request_total, summed by verb.
func (b *bench) requests(ctx context.Context) (map[string]float64, error) {
	raw, err := b.c.Kube.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("apiserver /metrics: %w", err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := requestLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, _ := strconv.ParseFloat(m[2], 64)
		if vm := verbLabel.FindStringSubmatch(m[1]); vm != nil {
			out[vm[1]] += v
		}
	}
	return out, nil
}

// backgroundRate is the quietest of three 5 s windows.
func (b *bench) backgroundRate(ctx context.Context) (map[string]float64, error) {
	var best map[string]float64
	for i := 0; i < 3; i++ {
		rate, err := b.idleRate(ctx)
		if err != nil {
			return nil, err
		}
		if best == nil || total(rate) < total(best) {
			best = rate
		}
	}
	return best, nil
}

// quietRate waits until the apiserver is back to the background rate (a 5 s window at most 25 % and
// 2 requests a second above it; at most 3 minutes) and returns that window's rate.
func (b *bench) quietRate(ctx context.Context, background map[string]float64) (map[string]float64, error) {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		rate, err := b.idleRate(ctx)
		if err != nil {
			return nil, err
		}
		if total(rate) <= total(background)*1.25+2 {
			return rate, nil
		}
		if time.Now().After(deadline) {
			logf("apiserver not back to its background rate after 3 minutes (%.1f requests/s against %.1f); measuring on", total(rate), total(background))
			return rate, nil
		}
	}
}

// idleRate is the background request rate (controllers, KWOK, leases, the agent) per second by verb,
// over 5 s of nothing happening; it is subtracted from every measurement.
func (b *bench) idleRate(ctx context.Context) (map[string]float64, error) {
	a, err := b.requests(ctx)
	if err != nil {
		return nil, err
	}
	time.Sleep(5 * time.Second)
	z, err := b.requests(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for k, v := range z {
		out[k] = (v - a[k]) / 5
	}
	return out, nil
}

// ---- scenario 3: reading the mesh ----

// counts parses "2000,5000" (bad entries are left out).
func counts(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

func (b *bench) reading(ctx context.Context, proxies, runs int) error {
	ns := "bench-proxies"
	rev := b.revs[1]
	if _, err := b.c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{"istio.io/rev": rev}}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	const deployments = 20
	var refs []kube.WorkloadRef
	for i := 0; i < deployments; i++ {
		n := int32(proxies / deployments)
		if i < proxies%deployments {
			n++
		}
		d := deployment(ns, fmt.Sprintf("fleet-%d", i), n, "0s")
		_, err := b.c.Kube.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) { // a larger size after a smaller one: scale up
			patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)
			_, err = b.c.Kube.AppsV1().Deployments(ns).Patch(ctx, d.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		}
		if err != nil {
			return err
		}
		refs = append(refs, kube.WorkloadRef{Kind: "Deployment", Namespace: ns, Name: d.Name})
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	t0 := time.Now()
	if err := kube.WaitRollouts(wctx, b.c.Kube, refs, func(s string) {}); err != nil {
		return fmt.Errorf("%d proxy pods: %w", proxies, err)
	}
	logf("%d pods ready in %s; waiting for their proxies to connect", proxies, time.Since(t0).Round(time.Second))
	// Every pod's simulated proxy connected and SYNCED, as our status reports it.
	var total int
	for {
		out, err := exec.Command(b.plugin(), "--kubeconfig", b.kubeconfig, "status", "--proxies", "-o", "json").Output()
		if err == nil {
			total = strings.Count(string(out), `"state": "SYNCED"`)
			if total >= proxies {
				break
			}
		}
		if wctx.Err() != nil {
			return fmt.Errorf("only %d proxies SYNCED after waiting", total)
		}
		logf("%d proxies SYNCED so far", total)
		time.Sleep(10 * time.Second)
	}
	var oursT, oursM, istT, istM []float64
	for r := 0; r < runs; r++ {
		t, m, err := measure(b.plugin(), "--kubeconfig", b.kubeconfig, "status", "--proxies", "-o", "json")
		if err != nil {
			return err
		}
		oursT, oursM = append(oursT, t), append(oursM, m)
		t, m, err = measure(filepath.Join(b.bin, "istioctl-new"), "--kubeconfig", b.kubeconfig, "proxy-status", "--revision", rev)
		if err != nil {
			return err
		}
		istT, istM = append(istT, t), append(istM, m)
	}
	note := fmt.Sprintf("%d proxies in the mesh (%d on %s); ours reads every revision's istiod, istioctl one", total, proxies, rev)
	b.add("3 reading the mesh", "`status --proxies -o json` wall time", secs(median(oursT)), spread(oursT), note)
	b.add("3 reading the mesh", "`istioctl proxy-status --revision` wall time", secs(median(istT)), spread(istT), "istioctl "+rev)
	at := fmt.Sprintf("at %d proxies", total)
	b.add("3 reading the mesh", "time ratio (ours / istioctl)", fmt.Sprintf("%.2f", median(oursT)/median(istT)), "", at)
	b.add("3 reading the mesh", "`status --proxies` peak memory (max RSS)", mib(median(oursM)), spreadScaled(oursM, 1<<20, " MiB"), "")
	b.add("3 reading the mesh", "`istioctl proxy-status` peak memory (max RSS)", mib(median(istM)), spreadScaled(istM, 1<<20, " MiB"), "")
	b.add("3 reading the mesh", "memory ratio (ours / istioctl)", fmt.Sprintf("%.2f", median(oursM)/median(istM)), "", at)
	return nil
}

// measure runs a command to completion: wall seconds and peak RSS in bytes.
func measure(name string, args ...string) (float64, float64, error) {
	return measureExit(false, name, args...)
}

// measureExit is measure; anyExit accepts a non-zero exit (a report that found something).
func measureExit(anyExit bool, name string, args ...string) (float64, float64, error) {
	var peak *os.File
	cmd := exec.Command(name, args...)
	if gnuTime != "" {
		f, err := os.CreateTemp("", "bench-rss")
		if err != nil {
			return 0, 0, err
		}
		defer os.Remove(f.Name())
		f.Close()
		peak = f
		cmd = exec.Command(gnuTime, append([]string{"-f", "%M", "-o", f.Name(), name}, args...)...)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		if _, exited := err.(*exec.ExitError); !anyExit || !exited {
			return 0, 0, fmt.Errorf("%s: %v: %s", filepath.Base(name), err, lastLines(stderr.String(), 3))
		}
	}
	secs := time.Since(t0).Seconds()
	if peak != nil {
		out, err := os.ReadFile(peak.Name())
		if err != nil {
			return 0, 0, err
		}
		kib, err := strconv.ParseFloat(strings.TrimSpace(lastLines(string(out), 1)), 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: peak memory: %q", gnuTime, out)
		}
		return secs, kib * 1024, nil
	}
	ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	rss := 0.0
	if ru != nil {
		rss = float64(ru.Maxrss) * 1024 // Linux reports KiB
	}
	return secs, rss, nil
}

// gnuTime is GNU time, which forks the command it measures. A command this process starts itself is
// vforked: it begins on this process's memory, and Linux keeps that high-water mark across exec, so a
// command smaller than the bench reported the bench's own RSS (108.3 MiB for both tools, after the
// 300-workload fleets). Without it the figures are the children's rusage, a floor at the bench's size.
var gnuTime = func() string {
	if _, err := os.Stat("/usr/bin/time"); err == nil {
		return "/usr/bin/time"
	}
	logf("no /usr/bin/time (Debian package time): peak memory is read from rusage and is at least the bench's own")
	return ""
}()

// ---- scenario 4 and 5 ----

func (b *bench) binary() error {
	for _, c := range []struct{ name, path string }{{"kubectl istio-upgrade", b.plugin()}, {"istioctl", filepath.Join(b.bin, "istioctl-new")}} {
		var ts []float64
		for i := 0; i < 20; i++ {
			t, _, err := measure(c.path, "--help")
			if err != nil {
				return err
			}
			ts = append(ts, t)
		}
		b.add("4 binary", "`"+c.name+" --help` start-up", fmt.Sprintf("%.0f ms", median(ts)*1000), spreadMs(ts), "20 runs")
	}
	analyzer := filepath.Join(filepath.Dir(resolve(b.plugin())), "istio-upgrade-analyze")
	for _, c := range []struct{ name, path string }{{"kubectl-istio_upgrade", b.plugin()}, {"istio-upgrade-analyze (companion)", analyzer}, {"istioctl", filepath.Join(b.bin, "istioctl-new")}} {
		st, err := os.Stat(resolve(c.path))
		if err != nil {
			return err
		}
		b.add("4 binary", c.name+" size", mib(float64(st.Size())), "", "")
	}
	// Istio's analyzers: ours run them through the companion, with every other check; istioctl alone.
	for _, c := range []struct {
		figure, path string
		args         []string
	}{
		{"`precheck -o json` wall time (every check, Istio's analyzers among them)", b.plugin(), []string{"--kubeconfig", b.kubeconfig, "precheck", "-o", "json"}},
		{"`istioctl analyze -A` wall time", filepath.Join(b.bin, "istioctl-new"), []string{"--kubeconfig", b.kubeconfig, "analyze", "-A"}},
	} {
		var ts []float64
		for i := 0; i < 5; i++ {
			t, _, err := measureExit(true, c.path, c.args...)
			if err != nil {
				return err
			}
			ts = append(ts, t)
		}
		b.add("4 binary", c.figure, secs(median(ts)), spread(ts), "")
	}
	return nil
}

func resolve(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

var benchLine = regexp.MustCompile(`^BenchmarkDiff10kProxies\S*\s+\d+\s+([0-9.]+) ns/op\s+([0-9.]+) B/op\s+([0-9.]+) allocs/op`)

func (b *bench) diff() error {
	out, err := exec.Command("go", "test", "-run", "^$", "-bench", "BenchmarkDiff10kProxies", "-benchmem", "-count", "5", "./pkg/mesh").CombinedOutput()
	if err != nil {
		return fmt.Errorf("go test -bench: %v: %s", err, lastLines(string(out), 5))
	}
	var ns, bytesOp, allocs []float64
	for _, l := range strings.Split(string(out), "\n") {
		if m := benchLine.FindStringSubmatch(l); m != nil {
			x, _ := strconv.ParseFloat(m[1], 64)
			y, _ := strconv.ParseFloat(m[2], 64)
			z, _ := strconv.ParseFloat(m[3], 64)
			ns, bytesOp, allocs = append(ns, x), append(bytesOp, y), append(allocs, z)
		}
	}
	if len(ns) == 0 {
		return fmt.Errorf("no benchmark lines in: %s", lastLines(string(out), 5))
	}
	b.add("5 diff", "snapshot diff, 10,000 proxies", fmt.Sprintf("%.1f ms/op", median(ns)/1e6), spreadScaled(ns, 1e6, " ms"), "go test -bench, 5 counts")
	b.add("5 diff", "memory per diff", mib(median(bytesOp)), "", fmt.Sprintf("%.0f allocs/op", median(allocs)))
	return nil
}

// ---- figures ----

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func spread(xs []float64) string { return spreadScaled(xs, 1, " s") }
func spreadMs(xs []float64) string {
	return spreadScaled(xs, 1e-3, " ms")
}

func spreadScaled(xs []float64, div float64, unit string) string {
	if len(xs) < 2 {
		return ""
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return fmt.Sprintf("%.3g–%.3g%s (n=%d)", s[0]/div, s[len(s)-1]/div, unit, len(s))
}

func secs(x float64) string {
	if x < 10 {
		return fmt.Sprintf("%.2f s", x)
	}
	return fmt.Sprintf("%.1f s", x)
}
func mib(x float64) string { return fmt.Sprintf("%.1f MiB", x/(1<<20)) }

func medianLoad(runs []map[string]float64) map[string]float64 {
	out := map[string]float64{}
	verbs := map[string]bool{}
	for _, r := range runs {
		for v := range r {
			verbs[v] = true
		}
	}
	for v := range verbs {
		var xs []float64
		for _, r := range runs {
			xs = append(xs, r[v])
		}
		out[v] = median(xs)
	}
	return out
}

func total(m map[string]float64) float64 {
	t := 0.0
	for _, v := range m {
		t += v
	}
	return t
}

func byVerb(m map[string]float64) string {
	var keys []string
	for k, v := range m {
		if v >= 0.05 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.1f", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

func (b *bench) markdown(n, m int, proxies string, runs, readRuns int, took time.Duration) string {
	var w strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&w, "# Benchmarks\n\nProduced by `make bench` on the test bed (real kube-apiserver, etcd, controller-manager and scheduler,\n")
	fmt.Fprintf(&w, "KWOK nodes and pods, real istiod %s and %s) on %s, %s.\n\n", b.revs[0], b.revs[1], time.Now().UTC().Format("2006-01-02"), machine(host))
	fmt.Fprintf(&w, "- Fleet (scenarios 1-2): N = %d namespaces x M = %d Deployments = %d workloads, 3 replicas each, maxUnavailable 0,\n", n, m, n*m)
	fmt.Fprintf(&w, "  maxSurge 1, readiness 2 s per pod; three identical fleets (ours, limit, runbook loop), each run moves all three to the other revision.\n")
	fmt.Fprintf(&w, "- Mesh reading (scenario 3): %s simulated proxies in one namespace (one size after the other), plus the fixtures and fleets; %d runs each.\n", proxies, readRuns)
	fmt.Fprintf(&w, "- Times are the median of %d runs (spread: min-max); API load is net of the idle background rate, per migrated workload, median.\n", runs)
	fmt.Fprintf(&w, "- The ztunnel roll (scenario 6) runs afterwards on a fresh bed of the ambient profile; its rows are added below.\n")
	fmt.Fprintf(&w, "- The whole run took %s.\n\n", took.Round(time.Second))
	fmt.Fprintf(&w, "| scenario | figure | value | spread | note |\n|---|---|---|---|---|\n")
	for _, r := range b.rows {
		fmt.Fprintf(&w, "| %s | %s | %s | %s | %s |\n", r.scenario, r.figure, r.value, r.spread, r.note)
	}
	if len(b.failed) > 0 {
		fmt.Fprintf(&w, "\nFAILED scenarios: %s\n", strings.Join(b.failed, "; "))
	}
	return w.String()
}

func machine(host string) string {
	cpu := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
		if len(f) >= 2 {
			kb, _ := strconv.ParseFloat(f[1], 64)
			mem = fmt.Sprintf(", %.0f GiB", kb/(1<<20))
		}
	}
	return fmt.Sprintf("%s/%s, %d cores (%s)%s, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpu, mem, runtime.Version())
}

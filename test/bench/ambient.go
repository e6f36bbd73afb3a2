package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// ---- scenario 6: the ztunnel roll (ambient test bed) ----

const ambientScenario = "6 ztunnel roll"

// ztunnelRoll times ztunnel-roll over the bed's three nodes (istio-cni, then ztunnel, one node at a
// time, gated), alternating between the two revisions, against a plain rollout restart of the ztunnel
// DaemonSet with its chart's strategy (the limit: no node staged, no gate).
func (b *bench) ztunnelRoll(ctx context.Context, runs int) error {
	var ours, lim []float64
	for i := 0; i < runs; i++ {
		to := b.revs[(i+1)%2]
		t0 := time.Now()
		if err := b.run(b.plugin(), "ztunnel-roll", "--to", to, "-y"); err != nil {
			return err
		}
		ours = append(ours, time.Since(t0).Seconds())
		logf("  ztunnel-roll --to %s: %.1f s", to, ours[len(ours)-1])
	}
	kubectl := b.bin + "/kubectl"
	for i := 0; i < runs; i++ {
		time.Sleep(1100 * time.Millisecond) // kubectl refuses a second restart within the same second
		t0 := time.Now()
		if err := b.run(kubectl, "-n", "istio-system", "rollout", "restart", "ds/ztunnel"); err != nil {
			return err
		}
		if err := b.run(kubectl, "-n", "istio-system", "rollout", "status", "ds/ztunnel", "--timeout=5m"); err != nil {
			return err
		}
		lim = append(lim, time.Since(t0).Seconds())
		logf("  rollout restart ds/ztunnel: %.1f s", lim[len(lim)-1])
	}
	b.add(ambientScenario, "`ztunnel-roll` 3 nodes, 1 per batch (istio-cni and ztunnel, cordon, SYNCED gate)", secs(median(ours)), spread(ours), "")
	b.add(ambientScenario, "limit: `kubectl rollout restart ds/ztunnel` + `rollout status` (chart strategy maxSurge 1)", secs(median(lim)), spread(lim), "ztunnel only, no gate, no node staged")
	b.add(ambientScenario, "ratio to the limit", fmt.Sprintf("%.2f", median(ours)/median(lim)), "", "")
	return nil
}

// appendRows puts rows into the table an earlier `make bench` run wrote to path, replacing the rows of
// the same scenarios, so one table holds every test-bed profile's figures.
func appendRows(path string, rows []row) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	lines := strings.Split(string(old), "\n")
	drop := map[string]bool{}
	for _, r := range rows {
		drop["| "+r.scenario+" |"] = true
	}
	var out []string
	last, generated, at := -1, false, -1
	for _, l := range lines {
		skip := false
		for p := range drop {
			skip = skip || strings.HasPrefix(l, p)
		}
		if skip {
			if at < 0 { // a scenario measured again takes the place of its old rows
				at = len(out) - 1
			}
			continue
		}
		out = append(out, l)
		switch {
		case l == beginMark:
			generated = true
		case l == endMark:
			generated = false
		case generated && strings.HasPrefix(l, "| "): // only the generated table, not tables in the prose
			last = len(out) - 1
		}
	}
	if last < 0 {
		return fmt.Errorf("%s has no table to add scenario rows to: run make bench first", path)
	}
	var add []string
	for _, r := range rows {
		add = append(add, fmt.Sprintf("| %s | %s | %s | %s | %s |", r.scenario, r.figure, r.value, r.spread, r.note))
	}
	if at >= 0 {
		last = at
	}
	out = append(out[:last+1], append(add, out[last+1:]...)...)
	return os.WriteFile(path, []byte(strings.Join(out, "\n")), 0o644)
}

// noteRun says, above the generated table, which scenarios a later run measured again (make bench with
// -only): the table is then one run per size. An older note on the same scenarios is replaced.
func noteRun(path, line string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	key, _, _ := strings.Cut(line, ":")
	var out []string
	for _, l := range strings.Split(string(old), "\n") {
		if strings.HasPrefix(l, key+":") {
			continue
		}
		if strings.HasPrefix(l, "| scenario | figure |") && len(out) > 0 && out[len(out)-1] == "" {
			out = append(out[:len(out)-1], line, "")
		}
		out = append(out, l)
	}
	return os.WriteFile(path, []byte(strings.Join(out, "\n")), 0o644)
}

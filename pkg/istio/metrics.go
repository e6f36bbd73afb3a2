package istio

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// GateMetrics are the istiod counters seed 001 tells engineers to watch during a migration: configs
// proxies rejected, and pushes istiod failed to make. A rise during a batch fails the batch's gate.
var GateMetrics = []string{
	"pilot_total_xds_rejects",
	"pilot_total_xds_internal_errors",
	"pilot_xds_write_timeout",
	"pilot_xds_push_context_errors",
}

// ZtunnelConnectionMetrics are ztunnel's TCP connection counters (its stats port, 15020): opened minus
// closed is what a node's ztunnel still carries, and what its restart would reset.
var ZtunnelConnectionMetrics = []string{"istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total"}

// OpenConnections is opened minus closed from ztunnel's counters.
func OpenConnections(m map[string]float64) int {
	return max(0, int(m[ZtunnelConnectionMetrics[0]]-m[ZtunnelConnectionMetrics[1]]))
}

// ParseMetrics sums each of the named counters (GateMetrics when none are named) over its label sets
// in a Prometheus text exposition.
func ParseMetrics(r io.Reader, names ...string) (map[string]float64, error) {
	if len(names) == 0 {
		names = GateMetrics
	}
	want := map[string]bool{}
	out := map[string]float64{}
	for _, m := range names {
		want[m], out[m] = true, 0
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		if !want[name] {
			continue
		}
		fields := strings.Fields(line[strings.LastIndex(line, "}")+1:])
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err == nil {
			out[name] += v
		}
	}
	return out, sc.Err()
}

package mesh

import (
	"fmt"
	"testing"
)

// fleet builds a snapshot of n proxies in n/10 workloads across n/100 namespaces; moved of them run
// on 1-31 with new pod names (restarted), the rest on 1-30.
func fleet(n, moved int) *Snapshot {
	s := &Snapshot{ProxiesRead: true, Proxies: make([]Proxy, 0, n)}
	for i := 0; i < n; i++ {
		ns := fmt.Sprintf("ns-%03d", i/100)
		wl := fmt.Sprintf("deployment/app-%04d", i/10)
		p := Proxy{Pod: fmt.Sprintf("app-%04d-abc-%05d", i/10, i), Namespace: ns, Workload: wl, Istiod: "istiod-1-30-x", Revision: "1-30", Version: "1.30.0", State: "SYNCED"}
		if i < moved {
			p.Pod += "-new"
			p.Istiod, p.Revision, p.Version = "istiod-1-31-x", "1-31", "1.31.0"
		}
		s.Proxies = append(s.Proxies, p)
	}
	for i := 0; i < n/100; i++ {
		s.Namespaces = append(s.Namespaces, Namespace{Name: fmt.Sprintf("ns-%03d", i), RevLabel: "1-30", Revision: "1-30"})
	}
	return s
}

// BenchmarkDiff10kProxies: the proxy-status diff after half of a 10,000-proxy fleet was restarted
// onto the new revision (5,000 removed + 5,000 added proxies, 500 workload groups).
func BenchmarkDiff10kProxies(b *testing.B) {
	before, after := fleet(10000, 0), fleet(10000, 5000)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		d := Compare(before, after)
		if len(d.Proxies) != 10000 || len(d.Groups) != 500 {
			b.Fatalf("diff: %d proxies, %d groups", len(d.Proxies), len(d.Groups))
		}
	}
}

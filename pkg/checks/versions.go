package checks

import (
	"fmt"
	"strconv"
	"strings"
)

// k8sSupport is the Kubernetes range each Istio minor supports, from Istio's support-status table
// (each release supports about five Kubernetes minors). 1.30 and 1.31 follow that pattern.
var k8sSupport = map[int][2]int{
	24: {28, 31},
	25: {29, 32},
	26: {29, 33},
	27: {29, 33},
	28: {30, 34},
	29: {31, 35},
	30: {32, 36},
	31: {33, 37},
}

// minorOf parses "1.30.2", "v1.36.3", "1.36" → 30 / 36.
func minorOf(v string) (int, bool) {
	v = strings.TrimPrefix(v, "v")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 || parts[0] != "1" {
		return 0, false
	}
	digits := parts[1]
	for i, r := range digits {
		if r < '0' || r > '9' {
			digits = digits[:i]
			break
		}
	}
	m, err := strconv.Atoi(digits)
	return m, err == nil
}

// KubernetesVersion: the cluster's version is supported by the current and the target Istio.
func KubernetesVersion(in *Input) []Finding {
	k, ok := minorOf(in.ServerVersion)
	if !ok {
		return []Finding{{Info, "K8S_VERSION_UNKNOWN", "cluster", fmt.Sprintf("could not read the Kubernetes version (%q)", in.ServerVersion), ""}}
	}
	var out []Finding
	seen := map[string]bool{}
	for _, r := range in.Snapshot.Revisions {
		if !r.Installed || r.Version == "" || seen[r.Version] {
			continue
		}
		seen[r.Version] = true
		m, ok := minorOf(r.Version)
		rng, known := k8sSupport[m]
		obj := "revision/" + r.Name
		switch {
		case !ok || !known:
			out = append(out, Finding{Warning, "K8S_SUPPORT_UNKNOWN", obj,
				fmt.Sprintf("Istio %s is not in the support table; cannot tell whether Kubernetes 1.%d is supported", r.Version, k),
				"check Istio's support-status page for this release"})
		case k < rng[0] || k > rng[1]:
			out = append(out, Finding{Error, "K8S_VERSION_UNSUPPORTED", obj,
				fmt.Sprintf("Istio %s supports Kubernetes 1.%d-1.%d; this cluster runs 1.%d", r.Version, rng[0], rng[1], k),
				"upgrade Kubernetes or pick an Istio version that supports it before moving workloads"})
		}
	}
	return out
}

// VersionSkew: the seeds advise one minor at a time between revisions.
func VersionSkew(in *Input) []Finding {
	lo, hi := 1<<30, -1
	var loV, hiV string
	for _, r := range in.Snapshot.Revisions {
		m, ok := minorOf(r.Version)
		if !r.Installed || !ok {
			continue
		}
		if m < lo {
			lo, loV = m, r.Name+" ("+r.Version+")"
		}
		if m > hi {
			hi, hiV = m, r.Name+" ("+r.Version+")"
		}
	}
	if hi-lo > 1 {
		return []Finding{{Warning, "VERSION_SKEW", "revisions",
			fmt.Sprintf("revisions %s and %s are %d minors apart; upgrade one minor at a time", loV, hiV, hi-lo),
			"install an intermediate revision and migrate through it"}}
	}
	return nil
}

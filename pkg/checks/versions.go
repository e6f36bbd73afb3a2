package checks

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
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

// minorOf reads the minor of a 1.x version as Kubernetes' own parser does ("1.30.2", "v1.36.3-dirty",
// "1.36", "1.30.2-distroless" → 30, 36, 36, 30).
func minorOf(v string) (int, bool) {
	p, err := version.ParseGeneric(v)
	if err != nil || p.Major() != 1 {
		return 0, false
	}
	return int(p.Minor()), true
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

// patchOf parses "1.29.2", "1.29.2-distroless" → (29, 2); a version without a patch is patch 0.
func patchOf(v string) (minor, patch int, ok bool) {
	p, err := version.ParseGeneric(v)
	if err != nil || p.Major() != 1 {
		return 0, 0, false
	}
	return int(p.Minor()), int(p.Patch()), true
}

// older says a < b for two parsed versions.
func older(am, ap, bm, bp int) bool { return am < bm || (am == bm && ap < bp) }

// Hazard is a known version-skew bug: proxies older than ProxyBelow fail against an istiod of
// IstiodFrom or newer.
type Hazard struct {
	ID         string
	ProxyBelow string
	IstiodFrom string
	What       string
}

// Hazards are the skew bugs an upgrade can walk into, with the releases they apply to.
var Hazards = []Hazard{
	{ID: "istio/istio#60486", ProxyBelow: "1.29.2", IstiodFrom: "1.30.0",
		What: "sidecars before 1.29.2 reject listeners that use istio.hashable_string from newer istiods (LDS rejected, the proxy never becomes ready) unless that istiod carries the fix"},
}

// VersionRules: the target at most one minor ahead of what serves now, no proxy newer than its
// istiod, and the known skew hazards between a proxy and the istiod it talks to (or will).
func VersionRules(in *Input) []Finding {
	s := in.Snapshot
	versionOf := installedVersions(s)
	out := targetSkips(s, versionOf, in.Target)
	hazardSeen := map[string]bool{}
	for _, p := range s.Proxies {
		obj := "pod/" + p.Namespace + "/" + p.Pod
		pm, pp, ok1 := patchOf(p.Version)
		im, ip, ok2 := patchOf(versionOf[p.Revision])
		if ok1 && ok2 && older(im, ip, pm, pp) && im != pm {
			out = append(out, Finding{Error, "PROXY_AHEAD_OF_ISTIOD", obj,
				fmt.Sprintf("proxy %s is newer than its istiod %s (%s); Istio supports proxies at or behind their control plane", p.Version, p.Revision, versionOf[p.Revision]),
				"move the workload to a revision at least as new as its proxy: kubectl istio-upgrade migrate-ns " + p.Namespace + " --to REV"})
		}
		if !ok1 {
			continue
		}
		// The istiods this proxy meets: its own, and the target it is about to move to.
		for _, rev := range []string{p.Revision, in.Target} {
			iv := versionOf[rev]
			im, ip, ok := patchOf(iv)
			if !ok {
				continue
			}
			for _, h := range Hazards {
				bm, bp, _ := patchOf(h.ProxyBelow)
				fm, fp, _ := patchOf(h.IstiodFrom)
				key := h.ID + p.Namespace + p.Pod
				if hazardSeen[key] || !older(pm, pp, bm, bp) || older(im, ip, fm, fp) {
					continue
				}
				hazardSeen[key] = true
				out = append(out, Finding{Warning, "SKEW_HAZARD", obj,
					fmt.Sprintf("proxy %s with istiod %s (%s): %s (%s)", p.Version, rev, iv, h.What, h.ID),
					"restart the workload onto a proxy of " + h.ProxyBelow + " or later before it meets that istiod, or check that the istiod's release carries the fix"})
			}
		}
	}
	return out
}

// installedVersions is the Istio version of each installed revision.
func installedVersions(s *mesh.Snapshot) map[string]string {
	versionOf := map[string]string{}
	for _, r := range s.Revisions {
		if r.Installed {
			versionOf[r.Name] = r.Version
		}
	}
	return versionOf
}

// targetSkips: TARGET_SKIPS_MINOR for each serving revision more than one minor behind target.
func targetSkips(s *mesh.Snapshot, versionOf map[string]string, target string) []Finding {
	tv, ok := versionOf[target]
	tm, tok := minorOf(tv)
	if target == "" || !ok || !tok {
		return nil
	}
	var out []Finding
	for _, r := range ServingRevisions(s) {
		if m, ok := minorOf(versionOf[r]); ok && r != target && tm-m > 1 {
			out = append(out, Finding{Warning, "TARGET_SKIPS_MINOR", "revision/" + target,
				fmt.Sprintf("the target %s (%s) is %d minors ahead of %s (%s), which serves proxies now; Istio supports upgrading one minor at a time", target, tv, tm-m, r, versionOf[r]),
				"install the intermediate minor and migrate through it; the mutating steps refuse this target unless --allow-version-skip"})
		}
	}
	return out
}

// ServingRevisions are the revisions proxies run on now, and those namespaces select (read without
// proxies, as a dry run is, the namespaces still say it).
func ServingRevisions(s *mesh.Snapshot) []string {
	seen := map[string]bool{}
	var out []string
	add := func(rev string) {
		if rev != "" && !seen[rev] {
			seen[rev] = true
			out = append(out, rev)
		}
	}
	for _, p := range s.Proxies {
		add(p.Revision)
	}
	for _, n := range s.Namespaces {
		add(n.Revision)
	}
	sort.Strings(out)
	return out
}

// SkipsMinor says why moving to target skips a minor (the revisions serving now that are more than one
// minor behind it), or "" when it does not.
func SkipsMinor(s *mesh.Snapshot, target string) string {
	if fs := targetSkips(s, installedVersions(s), target); len(fs) > 0 {
		return fs[0].Message
	}
	return ""
}

// ambientComponents are the node agents of ambient mode, by the image they run.
var ambientComponents = map[string]string{"ztunnel": mesh.ComponentZtunnel, "install-cni": mesh.ComponentCNI}

// AmbientVersions: ztunnel and istio-cni are not canaried; each must be at most one minor behind the
// istiod it uses, and never ahead of it (Istio's ambient upgrade order: control plane, then CNI, then
// ztunnel). A ztunnel uses the istiod it is pointed at; istio-cni talks to none, so the newest
// installed istiod is the control plane it must not pass.
func AmbientVersions(in *Input) []Finding {
	var out []Finding
	newest := newestRevision(in.Snapshot)
	for i := range in.Raw.DaemonSets {
		ds := &in.Raw.DaemonSets[i]
		for _, c := range ds.Spec.Template.Spec.Containers {
			base := c.Image
			if i := strings.LastIndex(base, "/"); i >= 0 {
				base = base[i+1:]
			}
			base, _, _ = strings.Cut(base, ":")
			what, ok := ambientComponents[base]
			if !ok {
				continue
			}
			v, rev := mesh.TemplateTarget(&ds.Spec.Template, what)
			m, ok := minorOf(v)
			if !ok {
				continue
			}
			if what == mesh.ComponentCNI {
				rev = newest
			}
			var against []mesh.Revision
			for _, r := range in.Snapshot.Revisions {
				if r.Installed && (r.Name == rev || rev == "") {
					against = append(against, r)
				}
			}
			if len(against) == 0 { // pointed at a revision that is not installed: every istiod is a candidate
				for _, r := range in.Snapshot.Revisions {
					if r.Installed {
						against = append(against, r)
					}
				}
			}
			obj := "daemonset/" + ds.Namespace + "/" + ds.Name
			for _, r := range against {
				im, ok := minorOf(r.Version)
				if !ok {
					continue
				}
				switch {
				case m > im:
					out = append(out, Finding{Error, "AMBIENT_AHEAD_OF_ISTIOD", obj,
						fmt.Sprintf("%s %s is newer than istiod %s (%s): the control plane must be upgraded first", what, v, r.Name, r.Version),
						"upgrade the control plane before " + what})
				case im-m > 1:
					out = append(out, Finding{Warning, "AMBIENT_VERSION_SKEW", obj,
						fmt.Sprintf("%s %s is %d minors behind istiod %s (%s); Istio supports one", what, v, im-m, r.Name, r.Version),
						"kubectl istio-upgrade ztunnel-roll --to " + r.Name + " (istio-cni first, then ztunnel)"})
				}
			}
			break
		}
	}
	return out
}

package checks

import (
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// Namespaces: one injection selector per namespace, naming something that exists, and pods that run
// the revision their namespace asks for.
func Namespaces(in *Input) []Finding {
	var out []Finding
	target := in.Target
	if target == "" {
		target = "<new revision>"
	}
	for _, n := range in.Snapshot.Namespaces {
		obj := "namespace/" + n.Name
		for _, c := range n.Conflicts {
			switch {
			case strings.Contains(c, "IST0123"):
				out = append(out, Finding{Warning, "NS_BOTH_LABELS", obj, c,
					fmt.Sprintf("kubectl istio-upgrade migrate-ns %s --to %s (keeps one selector)", n.Name, target)})
			case strings.Contains(c, "no default"):
				out = append(out, Finding{Error, "NS_NO_DEFAULT", obj, c, "kubectl istio-upgrade tag-move default --to <revision>"})
			default:
				out = append(out, Finding{Error, "NS_UNKNOWN_REVISION", obj, c + ": new pods fail injection (the webhook no longer matches)",
					fmt.Sprintf("kubectl istio-upgrade migrate-ns %s --to %s", n.Name, target)})
			}
		}
		if n.InjectionLabel == "enabled" && n.RevLabel == "" {
			out = append(out, Finding{Warning, "NS_LEGACY_INJECTION_LABEL", obj,
				fmt.Sprintf("%s still uses istio-injection=enabled: it follows whatever the default tag points at (now %s), so moving that tag restarts nothing but changes every new pod", n.Name, n.Revision),
				fmt.Sprintf("kubectl istio-upgrade migrate-ns %s --to %s (sets istio.io/rev)", n.Name, target)})
		}
		if n.NeedsRestart > 0 {
			out = append(out, Finding{Warning, "NS_PROXY_MISMATCH", obj,
				fmt.Sprintf("%d workloads in %s run proxies of another revision than the namespace asks for (%s)", n.NeedsRestart, n.Name, n.Revision),
				fmt.Sprintf("kubectl istio-upgrade migrate-ns %s --to %s", n.Name, n.Revision)})
		}
	}
	return out
}

// DataPlane: every proxy is connected and SYNCED, and not too far behind its istiod.
func DataPlane(in *Input) []Finding {
	s := in.Snapshot
	if !s.ProxiesRead {
		return nil
	}
	var out []Finding
	for _, w := range s.Warnings {
		out = append(out, Finding{Warning, "SYNCZ_UNAVAILABLE", "istiod", w, "check the istiod pod and that you may port-forward to it"})
	}
	versionOf := map[string]string{}
	for _, r := range s.Revisions {
		versionOf[r.Name] = r.Version
	}
	connected := map[string]bool{}
	for _, p := range s.Proxies {
		connected[p.Namespace+"/"+p.Pod] = true
		obj := "pod/" + p.Namespace + "/" + p.Pod
		if p.State != istio.StateSynced {
			out = append(out, Finding{Warning, "PROXY_NOT_SYNCED", obj,
				fmt.Sprintf("proxy on %s is %s (%s)", p.Istiod, p.State, typesString(p.Types)),
				"istioctl proxy-status " + p.Pod + "." + p.Namespace + " shows the diff; restart the pod if it stays"})
		}
		pm, ok1 := minorOf(p.Version)
		im, ok2 := minorOf(versionOf[p.Revision])
		if ok1 && ok2 && im-pm >= 2 {
			out = append(out, Finding{Warning, "PROXY_VERSION_SKEW", obj,
				fmt.Sprintf("proxy %s is %d minors behind its istiod %s", p.Version, im-pm, versionOf[p.Revision]),
				"restart the workload so it gets the current proxy"})
		}
	}
	if len(s.Warnings) > 0 {
		return out // with an istiod unread, "disconnected" would be a guess
	}
	var disconnected []string
	for _, p := range in.Raw.Pods {
		if _, injected := istio.InjectedRevision(p.Labels, p.Annotations); !injected || p.Status.Phase != "Running" || p.DeletionTimestamp != nil {
			continue
		}
		if in.Snapshot.Namespace != "" && p.Namespace != in.Snapshot.Namespace {
			continue
		}
		if !connected[p.Namespace+"/"+p.Name] {
			disconnected = append(disconnected, p.Namespace+"/"+p.Name)
		}
	}
	sort.Strings(disconnected)
	for _, d := range disconnected {
		out = append(out, Finding{Warning, "PROXY_DISCONNECTED", "pod/" + d,
			"running pod with a sidecar is not connected to any istiod", "check the pod's istio-proxy logs; restart it if the istiod it used is gone"})
	}
	return out
}

func typesString(t map[string]string) string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+t[k])
	}
	return strings.Join(parts, " ")
}

// Gateways: more than one replica, Services that do not pin a revision, Gateway resources that select pods.
func Gateways(in *Input) []Finding {
	var out []Finding
	revs := map[string]bool{}
	for _, g := range in.Snapshot.Gateways {
		obj := "deployment/" + g.Namespace + "/" + g.Name
		if g.Revision != "" {
			revs[g.Revision] = true
		}
		if g.Replicas == 1 {
			out = append(out, Finding{Warning, "GATEWAY_SINGLE_REPLICA", obj,
				"gateway runs one replica: any restart drops ingress traffic",
				fmt.Sprintf("kubectl -n %s scale deployment %s --replicas=2; use canary-gw/shift rather than restarting it", g.Namespace, g.Name)})
		}
	}
	if len(revs) > 1 {
		names := make([]string, 0, len(revs))
		for r := range revs {
			names = append(names, r)
		}
		sort.Strings(names)
		out = append(out, Finding{Info, "GATEWAYS_MIXED_REVISIONS", "gateways", "gateways run on revisions " + strings.Join(names, ", "), ""})
	}
	for _, svc := range in.Raw.Services {
		if _, pins := svc.Spec.Selector[istio.LabelRev]; !pins {
			continue
		}
		for _, d := range in.Raw.Deployments {
			if d.Namespace == svc.Namespace && istio.IsGatewayTemplate(d.Spec.Template.Labels, d.Spec.Template.Annotations) &&
				labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				out = append(out, Finding{Warning, "GATEWAY_SERVICE_PINS_REVISION", "service/" + svc.Namespace + "/" + svc.Name,
					"Service selects gateway pods by istio.io/rev: a canary gateway can never join it, and removing the old revision empties it",
					"remove istio.io/rev from the Service's selector (keep app/istio labels)"})
				break
			}
		}
	}
	names := make([]string, 0, len(in.Gateways))
	for k := range in.Gateways {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		sel := in.Gateways[name]
		if len(sel) == 0 {
			continue
		}
		matched := false
		for _, p := range in.RunningPods {
			if labels.SelectorFromSet(sel).Matches(labels.Set(p.Labels)) {
				matched = true
				break
			}
		}
		if !matched {
			out = append(out, Finding{Warning, "GATEWAY_SELECTS_NOTHING", "gateway/" + name,
				"Gateway selector " + labels.SelectorFromSet(sel).String() + " matches no running pod", "fix the selector or the gateway deployment's labels"})
		}
	}
	return out
}

// GatewayAPIFollowsTag: a Gateway of Istio's classes whose revision comes through a tag (its own
// istio.io/rev, its namespace's label, or the default tag) is re-deployed by istiod the moment the tag
// moves, all its pods at once, not on the next restart like a sidecar (istio/istio#59959). Pinning it
// to its current revision makes its move a step of its own.
func GatewayAPIFollowsTag(in *Input) []Finding {
	s := in.Snapshot
	tags := map[string]string{}
	for _, t := range s.Tags {
		tags[t.Name] = t.Revision
	}
	var out []Finding
	for _, g := range in.GatewayAPI {
		name, how := s.Selects(g)
		rev, isTag := tags[name]
		if !isTag {
			continue
		}
		out = append(out, Finding{Warning, "GATEWAY_FOLLOWS_TAG", "gateway/" + g.Namespace + "/" + g.Name,
			fmt.Sprintf("Gateway API gateway (class %s) follows tag %s (now %s) through %s: istiod re-deploys all its pods the moment the tag moves", g.Class, name, rev, how),
			fmt.Sprintf("kubectl istio-upgrade migrate-gw gateway/%s -n %s --to %s (pins it, gated; tag-move and migrate-ns do this by default)", g.Name, g.Namespace, rev)})
	}
	return out
}

// InstallMethod: Helm-owned revisions are removed with helm, not by deleting objects.
func InstallMethod(in *Input) []Finding {
	if len(in.HelmReleases) > 0 {
		return []Finding{{Info, "HELM_INSTALL", "namespace/" + in.Snapshot.IstioNamespace,
			"Istio is installed with Helm (releases " + strings.Join(in.HelmReleases, ", ") + "): cleanup prints helm commands and leaves Helm-owned objects unless --force",
			""}}
	}
	for _, r := range in.Snapshot.Revisions {
		if r.Helm {
			return []Finding{{Info, "HELM_INSTALL", "revision/" + r.Name, "istiod is labelled as Helm-managed", ""}}
		}
	}
	return []Finding{{Info, "ISTIOCTL_INSTALL", "namespace/" + in.Snapshot.IstioNamespace, "Istio is installed with istioctl or plain manifests (no Helm releases)", ""}}
}

// Permissions: one finding listing every verb the runbook needs and the caller lacks.
func Permissions(in *Input) []Finding {
	if len(in.MissingPermissions) == 0 {
		return nil
	}
	return []Finding{{Error, "PERMISSIONS_MISSING", "user", "missing permissions the upgrade runbook needs: " + strings.Join(in.MissingPermissions, ", "),
		"grant them (see docs/runbook.md#permissions) or run as a cluster admin"}}
}

// GitOps finds the namespaces, gateways and Istio objects a GitOps controller (Argo CD, Flux) manages:
// a step that changes one warns, and the change must be committed (the step's -o yaml lists the patches),
// or the controller puts it back mid-upgrade.
func GitOps(in *Input) []Finding {
	if in.Raw == nil || in.Snapshot == nil {
		return nil
	}
	var out []Finding
	add := func(object string, m metav1.Object) {
		if owner := kube.GitOpsOwner(m); owner != "" {
			out = append(out, Finding{Warning, "GITOPS_MANAGED", object, object + " is managed by " + owner + ": a step that changes it warns, and the controller reverts the change unless it is committed",
				"commit the patches the step prints with --dry-run=client -o yaml, or pause the sync while upgrading"})
		}
	}
	revisioned := map[string]bool{}
	for _, n := range in.Snapshot.Namespaces {
		if n.Revision != "" {
			revisioned[n.Name] = true
		}
	}
	for i := range in.Raw.Namespaces {
		if n := &in.Raw.Namespaces[i]; revisioned[n.Name] {
			add("namespace/"+n.Name, n)
		}
	}
	gateways := map[string]bool{}
	for _, g := range in.Snapshot.Gateways {
		gateways[g.Namespace+"/"+g.Name] = true
	}
	for i := range in.Raw.Deployments {
		if d := &in.Raw.Deployments[i]; gateways[d.Namespace+"/"+d.Name] {
			add("deployment/"+d.Namespace+"/"+d.Name, d)
		}
	}
	for i := range in.Raw.IstiodDeployments {
		d := &in.Raw.IstiodDeployments[i]
		add("deployment/"+d.Namespace+"/"+d.Name, d)
	}
	for i := range in.Raw.MutatingWebhooks {
		add("mutatingwebhookconfiguration/"+in.Raw.MutatingWebhooks[i].Name, &in.Raw.MutatingWebhooks[i])
	}
	for i := range in.Raw.ValidatingWebhooks {
		add("validatingwebhookconfiguration/"+in.Raw.ValidatingWebhooks[i].Name, &in.Raw.ValidatingWebhooks[i])
	}
	return out
}

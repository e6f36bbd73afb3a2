package checks

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// ControlPlane: every revision's istiod is ready, with more than one replica.
func ControlPlane(in *Input) []Finding {
	var out []Finding
	for _, r := range in.Snapshot.Revisions {
		obj := "revision/" + r.Name
		if !r.Installed {
			if r.InjectorWebhook != "" {
				out = append(out, Finding{Warning, "ORPHAN_INJECTOR", obj,
					fmt.Sprintf("injector webhook %s exists but revision %s has no istiod", r.InjectorWebhook, r.Name),
					"delete the webhook if the revision was removed: kubectl delete mutatingwebhookconfiguration " + r.InjectorWebhook})
			}
			continue
		}
		if r.Ready < r.Desired || r.Desired == 0 {
			out = append(out, Finding{Error, "ISTIOD_NOT_READY", obj,
				fmt.Sprintf("istiod %s has %d/%d ready replicas", r.Deployment, r.Ready, r.Desired),
				fmt.Sprintf("kubectl -n %s describe deployment %s", in.Snapshot.IstioNamespace, r.Deployment)})
		}
		if r.Desired == 1 {
			out = append(out, Finding{Warning, "ISTIOD_SINGLE_REPLICA", obj,
				fmt.Sprintf("istiod %s runs one replica: a restart of that pod leaves proxies without a control plane", r.Deployment),
				fmt.Sprintf("kubectl -n %s scale deployment %s --replicas=2 (or HPA minReplicas 2)", in.Snapshot.IstioNamespace, r.Deployment)})
		}
	}
	return out
}

func findRevision(s *mesh.Snapshot, name string) (mesh.Revision, bool) {
	for _, r := range s.Revisions {
		if r.Name == name {
			return r, true
		}
	}
	return mesh.Revision{}, false
}

// TargetRevision: the revision we upgrade to is installed, with its injector and ConfigMaps.
func TargetRevision(in *Input) []Finding {
	if in.Target == "" {
		return nil
	}
	obj := "revision/" + in.Target
	for _, t := range in.Snapshot.Tags {
		if t.Name == in.Target {
			return []Finding{{Error, "TARGET_IS_TAG", obj,
				fmt.Sprintf("%s is a revision tag (pointing at %s), not a revision", in.Target, t.Revision),
				"pass the revision name to --revision"}}
		}
	}
	r, ok := findRevision(in.Snapshot, in.Target)
	if !ok || !r.Installed {
		return []Finding{{Error, "TARGET_NOT_INSTALLED", obj,
			fmt.Sprintf("revision %s is not installed (no istiod deployment)", in.Target),
			fmt.Sprintf("istioctl install --set revision=%s (or helm install istiod-%s istio/istiod --set revision=%s)", in.Target, in.Target, in.Target)}}
	}
	var out []Finding
	if r.InjectorWebhook == "" {
		out = append(out, Finding{Error, "TARGET_NO_INJECTOR", obj,
			"revision " + in.Target + " has no sidecar injector webhook", "reinstall the revision's istiod"})
	}
	have := map[string]bool{}
	for _, cm := range r.ConfigMaps {
		have[cm] = true
	}
	var missing []string
	for _, cm := range []string{"istio-" + in.Target, "istio-sidecar-injector-" + in.Target} {
		if !have[cm] {
			missing = append(missing, cm)
		}
	}
	if len(missing) > 0 {
		out = append(out, Finding{Error, "TARGET_CONFIGMAP_MISSING", obj,
			"revision " + in.Target + " lacks ConfigMaps " + strings.Join(missing, ", "), "reinstall the revision's istiod"})
	}
	return out
}

// requiredCRDs are the Istio CRDs every revision needs.
var requiredCRDs = []string{
	"authorizationpolicies.security.istio.io", "destinationrules.networking.istio.io", "envoyfilters.networking.istio.io",
	"gateways.networking.istio.io", "peerauthentications.security.istio.io", "requestauthentications.security.istio.io",
	"serviceentries.networking.istio.io", "sidecars.networking.istio.io", "telemetries.telemetry.istio.io",
	"virtualservices.networking.istio.io", "workloadentries.networking.istio.io", "workloadgroups.networking.istio.io",
}

// CRDs: the Istio CRDs the revisions need are installed.
func CRDs(in *Input) []Finding {
	have := map[string]bool{}
	for _, c := range in.CRDs {
		have[c] = true
	}
	var missing []string
	for _, c := range requiredCRDs {
		if !have[c] {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return []Finding{{Error, "CRDS_MISSING", "cluster", "Istio CRDs missing: " + strings.Join(missing, ", "),
		"install them with the new istioctl (istioctl install) or the base Helm chart before the new revision"}}
}

// RootCA: all revisions must trust the same root (seed 003): pods of both revisions talk mTLS to each
// other while namespaces are split. We compare what decides the root: trust domain, external CA, and
// the plugged-in CA secret each istiod mounts.
func RootCA(in *Input) []Finding {
	fp := map[string][]string{}
	for _, d := range in.Raw.IstiodDeployments {
		rev := istio.RevisionOf(d.Labels)
		trust := "cluster.local"
		for _, cm := range in.Raw.ConfigMaps {
			if cm.Name == "istio-"+rev {
				for _, line := range strings.Split(cm.Data["mesh"], "\n") {
					if t := strings.TrimSpace(line); strings.HasPrefix(t, "trustDomain:") {
						trust = strings.Trim(strings.TrimSpace(strings.TrimPrefix(t, "trustDomain:")), `"'`)
					}
				}
			}
		}
		external, provider, secret := "", "", ""
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				switch e.Name {
				case "EXTERNAL_CA":
					external = e.Value
				case "PILOT_CERT_PROVIDER":
					provider = e.Value
				}
			}
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Secret != nil && strings.Contains(v.Secret.SecretName, "cacerts") {
				secret = v.Secret.SecretName
			}
		}
		key := fmt.Sprintf("trustDomain=%s externalCA=%s certProvider=%s caSecret=%s", trust, external, provider, secret)
		fp[key] = append(fp[key], rev)
	}
	if len(fp) <= 1 {
		return nil
	}
	var parts []string
	for k, revs := range fp {
		sort.Strings(revs)
		parts = append(parts, strings.Join(revs, ",")+": "+k)
	}
	sort.Strings(parts)
	return []Finding{{Error, "ROOT_CA_MISMATCH", "revisions",
		"revisions do not share one root of trust (" + strings.Join(parts, "; ") + "); workloads on different revisions would fail mTLS while the mesh is split",
		"give every revision the same trust domain and CA (same cacerts secret or external CA) before migrating"}}
}

// Webhooks: injector selectors must not overlap (IST0139), and the default validator and every tag
// must point at an installed revision.
func Webhooks(in *Input) []Finding {
	var out []Finding
	installed := map[string]bool{}
	for _, r := range in.Snapshot.Revisions {
		if r.Installed {
			installed[r.Name] = true
		}
	}
	for _, t := range in.Snapshot.Tags {
		if !installed[t.Revision] {
			sev := Error
			out = append(out, Finding{sev, "TAG_DANGLING", "tag/" + t.Name,
				fmt.Sprintf("tag %s points at revision %s, which is not installed: injection in its namespaces fails", t.Name, t.Revision),
				fmt.Sprintf("kubectl istio-upgrade tag-move %s --to <installed revision> --overwrite", t.Name)})
		}
	}
	for _, v := range in.Raw.ValidatingWebhooks {
		if v.Name == istio.DefaultValidatorName && !installed[istio.RevisionOf(v.Labels)] {
			out = append(out, Finding{Error, "DEFAULT_VALIDATOR_DANGLING", "validatingwebhookconfiguration/" + v.Name,
				"the default validator points at revision " + istio.RevisionOf(v.Labels) + ", which is not installed",
				"kubectl istio-upgrade tag-move default --to <installed revision> --overwrite"})
		}
	}
	out = append(out, overlaps(in)...)
	return out
}

// overlaps evaluates every Istio injector webhook's selectors against each namespace, for a pod
// without labels and a pod asking for injection: two configurations injecting the same pod is IST0139.
func overlaps(in *Input) []Finding {
	var out []Finding
	podLabelSets := []labels.Set{{}, {istio.LabelSidecarInject: "true"}}
	for _, ns := range in.Raw.Namespaces {
		for _, pl := range podLabelSets {
			var matched []string
			for _, w := range in.Raw.MutatingWebhooks {
				if _, isIstio := w.Labels[istio.LabelRev]; !isIstio && !strings.HasPrefix(w.Name, istio.InjectorPrefix) {
					continue
				}
				for _, h := range w.Webhooks {
					if selects(h.NamespaceSelector, ns.Labels) && selects(h.ObjectSelector, pl) {
						matched = append(matched, w.Name)
						break
					}
				}
			}
			if len(matched) > 1 {
				out = append(out, Finding{Error, "INJECTOR_OVERLAP", "namespace/" + ns.Name,
					fmt.Sprintf("pods in %s would be injected by %d webhooks (%s) (IST0139)", ns.Name, len(matched), strings.Join(matched, ", ")),
					"remove the overlapping webhook or the label that makes both match"})
				break
			}
		}
	}
	return out
}

func selects(sel *metav1.LabelSelector, l map[string]string) bool {
	if sel == nil {
		return true
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false
	}
	return s.Matches(labels.Set(l))
}

package precheck

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/checks"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/helm"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// permission is one verb on one resource the runbook needs.
type permission struct {
	verb, group, resource, subresource, name string
	istioNS                                  bool // namespaced to the Istio namespace (else cluster-wide)
	read                                     bool // needed to read the mesh at all
}

// access is the permission asked in the Istio namespace where it applies there.
func (p permission) access(istioNS string) kube.Access {
	a := kube.Access{Verb: p.verb, Group: p.group, Resource: p.resource, Subresource: p.subresource, Name: p.name}
	if p.istioNS {
		a.Namespace = istioNS
	}
	return a
}

func (p permission) String() string { return p.access("").String() }

// runbookPermissions is what the whole runbook (status … cleanup, undo) does.
var runbookPermissions = func() []permission {
	var ps []permission
	add := func(group, resource string, istioNS, read bool, verbs ...string) {
		for _, v := range verbs {
			ps = append(ps, permission{verb: v, group: group, resource: resource, istioNS: istioNS, read: read})
		}
	}
	add("", "namespaces", false, true, "get", "list")
	add("", "namespaces", false, false, "patch", "update")
	add("", "pods", false, true, "list")
	add("", "services", false, true, "list")
	add("", "services", true, false, "create", "delete")
	add("", "configmaps", true, true, "list")
	add("", "configmaps", true, false, "create", "update", "delete")
	add("apps", "deployments", false, true, "list")
	add("apps", "deployments", false, false, "patch", "update", "create", "delete")
	add("apps", "statefulsets", false, true, "list")
	add("apps", "statefulsets", false, false, "patch")
	add("apps", "daemonsets", false, true, "list")
	add("apps", "daemonsets", false, false, "patch")
	add("admissionregistration.k8s.io", "mutatingwebhookconfigurations", false, true, "list")
	add("admissionregistration.k8s.io", "mutatingwebhookconfigurations", false, false, "create", "update", "delete")
	add("admissionregistration.k8s.io", "validatingwebhookconfigurations", false, true, "list")
	add("admissionregistration.k8s.io", "validatingwebhookconfigurations", false, false, "update", "delete")
	add("autoscaling", "horizontalpodautoscalers", false, false, "list", "create", "update", "delete")
	add("policy", "poddisruptionbudgets", false, false, "list", "create", "delete")
	ps = append(ps,
		permission{verb: "create", resource: "pods", subresource: "portforward", istioNS: true, read: true},
		// the token of the one ServiceAccount the istiod client presents (mesh.TokenServiceAccount)
		permission{verb: "create", resource: "serviceaccounts", subresource: "token", name: mesh.TokenServiceAccount, istioNS: true, read: true})
	return ps
}()

// missingPermissions asks the apiserver (SelfSubjectAccessReview) for every permission. It returns the
// missing ones and, of those, the ones needed just to read the mesh.
func missingPermissions(ctx context.Context, c *kube.Clients, istioNS string) (missing, readMissing []string, err error) {
	want := make([]kube.Access, 0, len(runbookPermissions))
	of := map[kube.Access]permission{}
	for _, p := range runbookPermissions {
		a := p.access(istioNS)
		want, of[a] = append(want, a), p
	}
	denied, err := kube.Missing(ctx, c.Kube, want)
	for _, a := range denied {
		p := of[a]
		missing = append(missing, p.String())
		if p.read {
			readMissing = append(readMissing, p.String())
		}
	}
	sort.Strings(missing)
	sort.Strings(readMissing)
	return missing, readMissing, err
}

var (
	crdGVR     = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	gatewayGVR = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "gateways"}
)

// collect reads everything the checks need besides the snapshot. Optional parts that are forbidden or
// absent (Helm secrets, Gateway CRD) are skipped rather than failing the whole precheck.
func collect(ctx context.Context, c *kube.Clients, in *checks.Input, opts mesh.ReadOptions) error {
	v, err := c.Kube.Discovery().ServerVersion()
	if err != nil {
		return fmt.Errorf("server version: %w", err)
	}
	in.ServerVersion = v.GitVersion
	scope := opts.Namespace
	pdbs, err := c.Kube.PolicyV1().PodDisruptionBudgets(scope).List(ctx, metav1.ListOptions{})
	if err != nil && !apierrors.IsForbidden(err) {
		return fmt.Errorf("list poddisruptionbudgets: %w", err)
	} else if err == nil {
		in.PDBs = pdbs.Items
	}
	hpas, err := c.Kube.AutoscalingV2().HorizontalPodAutoscalers(scope).List(ctx, metav1.ListOptions{})
	if err != nil && !apierrors.IsForbidden(err) {
		return fmt.Errorf("list horizontalpodautoscalers: %w", err)
	} else if err == nil {
		in.HPAs = hpas.Items
	}
	crds, err := c.Dynamic.Resource(crdGVR).List(ctx, metav1.ListOptions{})
	if err == nil {
		in.CRDVersions = map[string][]string{}
		for _, crd := range crds.Items {
			in.CRDs = append(in.CRDs, crd.GetName())
			if group, _, _ := unstructured.NestedString(crd.Object, "spec", "group"); group == "gateway.networking.k8s.io" {
				in.CRDVersions[crd.GetName()] = servedVersions(crd)
			}
		}
	} else if !apierrors.IsForbidden(err) {
		return fmt.Errorf("list customresourcedefinitions: %w", err)
	} else {
		in.CRDs = nil
	}
	in.Gateways = map[string]map[string]string{}
	gws, err := c.Dynamic.Resource(gatewayGVR).Namespace(scope).List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, g := range gws.Items {
			sel, _, _ := unstructured.NestedStringMap(g.Object, "spec", "selector")
			in.Gateways[g.GetNamespace()+"/"+g.GetName()] = sel
		}
	}
	// Gateway API Gateways of Istio's classes (none without the CRD, nor without the right to list them).
	if gws, err := mesh.ListGatewayAPI(ctx, c.Dynamic, scope); err == nil {
		in.GatewayAPI = gws
	}
	// Istio's Helm releases in the Istio namespace and the gateways' (gateways live beside their apps),
	// read through the Helm SDK's storage; without the right to read Secrets they are simply not shown.
	if rels, _, err := helm.List(c.Kube, helm.Scope(in.Snapshot.IstioNamespace, in.Snapshot.Gateways)...); err == nil {
		for _, r := range rels {
			desc := r.String()
			switch {
			case r.Base():
				desc += " defaultRevision=" + orNone(r.DefaultRevision)
			default:
				desc += " revision=" + orNone(r.IstioRevision)
			}
			in.HelmReleases = append(in.HelmReleases, desc)
		}
	}
	for _, p := range in.Raw.Pods {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			in.RunningPods = append(in.RunningPods, p)
		}
	}
	return nil
}

func orNone(v string) string {
	if v == "" {
		return `""`
	}
	return v
}

// servedVersions are the versions a CRD serves.
func servedVersions(crd unstructured.Unstructured) []string {
	vs, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	var out []string
	for _, v := range vs {
		m, _ := v.(map[string]any)
		if served, _ := m["served"].(bool); served {
			if name, _ := m["name"].(string); name != "" {
				out = append(out, name)
			}
		}
	}
	sort.Strings(out)
	return out
}

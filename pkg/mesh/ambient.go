package mesh

import (
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// Components of ambient mode's node agents.
const (
	ComponentZtunnel = "ztunnel"
	ComponentCNI     = "istio-cni"
)

// NodeAgent is one pod of ambient mode's node agents: a node's ztunnel or its istio-cni agent. Neither
// is canaried: one DaemonSet each, rolled node by node (ztunnel-roll).
type NodeAgent struct {
	Node      string `json:"node"`
	Component string `json:"component"`
	Pod       string `json:"pod"`
	Version   string `json:"version"`
	// Revision is the istiod a ztunnel is pointed at; for istio-cni (no xDS) the revision whose
	// version it runs.
	Revision string `json:"revision"`
	Ready    bool   `json:"ready"`
	// Current says the pod runs what its DaemonSet's template says (an OnDelete roll leaves older pods).
	Current bool `json:"current"`
	// Istiod and SyncState are the ztunnel's xDS connection as syncz reports it (with proxies read).
	Istiod    string `json:"istiod,omitempty"`
	SyncState string `json:"syncState,omitempty"`
	// AmbientPods counts the node's ambient pods: those the node's ztunnel carries traffic for.
	AmbientPods int `json:"ambientPods"`
}

// AmbientComponent is the node-agent component a DaemonSet in the Istio namespace is, or "".
func AmbientComponent(ds *appsv1.DaemonSet, istioNamespace string) string {
	if ds.Namespace != istioNamespace {
		return ""
	}
	switch ds.Name {
	case istio.ZtunnelDaemonSet:
		return ComponentZtunnel
	case istio.CNIDaemonSet:
		return ComponentCNI
	}
	return ""
}

// IsAmbientPod says a running pod is captured by ambient mode: its namespace (or the pod itself) asks
// for dataplane-mode ambient, the pod does not opt out, has no sidecar and is not on the host network.
func IsAmbientPod(p *corev1.Pod, nsLabels map[string]string) bool {
	if p.Spec.HostNetwork || p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	if _, injected := p.Annotations[istio.AnnotationStatus]; injected {
		return false
	}
	mode := p.Labels[istio.LabelDataplaneMode]
	if mode == "" {
		mode = nsLabels[istio.LabelDataplaneMode]
	}
	return mode == istio.DataplaneAmbient
}

// TemplateTarget is what a node agent's pod template runs: its version, and for a ztunnel the istiod
// revision it is pointed at.
func TemplateTarget(t *corev1.PodTemplateSpec, component string) (version, revision string) {
	return agentTarget(t.Annotations, t.Spec.Containers, component)
}

// PodTarget is what a node agent pod runs, as TemplateTarget.
func PodTarget(p *corev1.Pod, component string) (version, revision string) {
	return agentTarget(p.Annotations, p.Spec.Containers, component)
}

func agentTarget(annotations map[string]string, containers []corev1.Container, component string) (version, revision string) {
	xds := ""
	for _, c := range containers {
		if v := istio.VersionFromImage(c.Image); v != "" && version == "" {
			version = v
		}
		for _, e := range c.Env {
			if e.Name == istio.EnvXDSAddress {
				xds = e.Value
			}
		}
	}
	if component == ComponentZtunnel {
		revision = istio.ZtunnelRevision(annotations, xds)
	}
	return version, revision
}

// buildAmbient lists the node agents, the ambient pods each node's ztunnel serves, and which
// namespaces are ambient.
func buildAmbient(s *Snapshot, in Inputs, nsIndex map[string]*Namespace) {
	nsLabels := map[string]map[string]string{}
	for _, ns := range in.Namespaces {
		nsLabels[ns.Name] = ns.Labels
		if n := nsIndex[ns.Name]; n != nil {
			n.DataplaneMode, n.Waypoint = ns.Labels[istio.LabelDataplaneMode], ns.Labels[istio.LabelUseWaypoint]
		}
	}
	perNode := map[string]int{}
	for i := range in.Pods {
		p := &in.Pods[i]
		if IsAmbientPod(p, nsLabels[p.Namespace]) {
			perNode[p.Spec.NodeName]++
			if n := nsIndex[p.Namespace]; n != nil {
				n.AmbientPods++
			}
		}
	}
	versionRev := map[string]string{}
	for _, r := range s.Revisions {
		if r.Installed && r.Version != "" {
			if _, seen := versionRev[r.Version]; !seen {
				versionRev[r.Version] = r.Name
			}
		}
	}
	sync := map[string]Proxy{}
	for _, p := range s.Proxies {
		if p.Type == ComponentZtunnel {
			sync[p.Namespace+"/"+p.Pod] = p
		}
	}
	for i := range in.DaemonSets {
		ds := &in.DaemonSets[i]
		comp := AmbientComponent(ds, in.IstioNamespace)
		if comp == "" {
			continue
		}
		tv, tr := TemplateTarget(&ds.Spec.Template, comp)
		if comp == ComponentCNI {
			tr = versionRev[tv]
		}
		for j := range in.Pods {
			p := &in.Pods[j]
			if p.Namespace != ds.Namespace || p.DeletionTimestamp != nil {
				continue
			}
			if kind, name := podOwnerOf(p); kind != "DaemonSet" || name != ds.Name {
				continue
			}
			v, rev := PodTarget(p, comp)
			if comp == ComponentCNI {
				rev = versionRev[v]
			}
			a := NodeAgent{Node: p.Spec.NodeName, Component: comp, Pod: p.Name, Version: v, Revision: rev,
				Ready: kube.PodReady(p), Current: v == tv && rev == tr}
			if comp == ComponentZtunnel {
				a.AmbientPods = perNode[p.Spec.NodeName]
				if px, ok := sync[p.Namespace+"/"+p.Name]; ok {
					a.Istiod, a.SyncState = px.Istiod, px.State
				}
			}
			s.NodeAgents = append(s.NodeAgents, a)
		}
	}
	sort.Slice(s.NodeAgents, func(i, j int) bool {
		a, b := s.NodeAgents[i], s.NodeAgents[j]
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		return a.Component < b.Component
	})
}

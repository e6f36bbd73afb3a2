// Package mesh is the model of a mesh during an upgrade: a Snapshot of revisions, tags, namespaces,
// workloads, gateways and proxies read from the cluster, and the Diff between two snapshots that every
// mutating step prints after it acts.
package mesh

import "time"

// Snapshot is where every part of the mesh stands at one moment.
type Snapshot struct {
	ReadAt         time.Time `json:"readAt"`
	IstioNamespace string    `json:"istioNamespace"`
	// Namespace is set when the snapshot was limited to one namespace (-n).
	Namespace  string      `json:"namespace,omitempty"`
	Revisions  []Revision  `json:"revisions"`
	Tags       []Tag       `json:"tags"`
	Namespaces []Namespace `json:"namespaces"`
	Workloads  []Workload  `json:"workloads"`
	Gateways   []Gateway   `json:"gateways"`
	Proxies    []Proxy     `json:"proxies"`
	// Unmanaged are injected pods no restart can move: a Job's (a CronJob's run), a ReplicaSet's
	// without a Deployment, a pod without a controller. Named, never skipped silently.
	Unmanaged []UnmanagedPod `json:"unmanaged"`
	// NodeAgents are ambient mode's ztunnel and istio-cni pods, node by node.
	NodeAgents []NodeAgent `json:"nodeAgents"`
	// ProxiesRead is false when syncz was not asked (status without --proxies skips nothing else).
	ProxiesRead bool `json:"proxiesRead"`
	// Warnings are parts that could not be read (an istiod that did not answer syncz, …).
	Warnings []string `json:"warnings"`
}

// Revision is one istiod control plane.
type Revision struct {
	Name             string   `json:"name"`
	Deployment       string   `json:"deployment"`
	Version          string   `json:"version"`
	Image            string   `json:"image"`
	Ready            int32    `json:"ready"`
	Desired          int32    `json:"desired"`
	Pods             []string `json:"pods"`
	InjectorWebhook  string   `json:"injectorWebhook,omitempty"`
	ConfigMaps       []string `json:"configMaps"`
	Tags             []string `json:"tags"`
	Default          bool     `json:"default"`
	DefaultValidator bool     `json:"defaultValidator"`
	// Installed is false for a revision known only from labels or webhooks (no istiod Deployment).
	Installed bool `json:"installed"`
	Helm      bool `json:"helm"`
}

// Tag is a revision tag: the istio-revision-tag-<name> webhook pointing at a revision.
type Tag struct {
	Name     string `json:"name"`
	Revision string `json:"revision"`
	Webhook  string `json:"webhook"`
}

// Namespace is a namespace and the revision its labels ask for.
type Namespace struct {
	Name string `json:"name"`
	// InjectionLabel is the value of istio-injection, RevLabel of istio.io/rev.
	InjectionLabel string `json:"injectionLabel,omitempty"`
	RevLabel       string `json:"revLabel,omitempty"`
	// Revision is what the labels resolve to (through tags), empty when not injected.
	Revision string `json:"revision,omitempty"`
	// Via is the tag the revision was resolved through, if any.
	Via       string   `json:"via,omitempty"`
	Conflicts []string `json:"conflicts"`
	// Terminating is set while the namespace is being deleted.
	Terminating bool `json:"terminating,omitempty"`
	Workloads   int  `json:"workloads"`
	Pods        int  `json:"pods"`
	// NeedsRestart counts workloads whose pods run another revision's proxy than they ask for.
	NeedsRestart int `json:"needsRestart"`
	// DataplaneMode is the istio.io/dataplane-mode label (ambient), Waypoint the istio.io/use-waypoint
	// label, AmbientPods the running pods ambient captures here.
	DataplaneMode string `json:"dataplaneMode,omitempty"`
	Waypoint      string `json:"waypoint,omitempty"`
	AmbientPods   int    `json:"ambientPods,omitempty"`
}

// Selector returns the injection label as one string ("istio.io/rev=1-30", "istio-injection=enabled").
func (n Namespace) Selector() string {
	switch {
	case n.InjectionLabel != "" && n.RevLabel != "":
		return "istio-injection=" + n.InjectionLabel + ",istio.io/rev=" + n.RevLabel
	case n.InjectionLabel != "":
		return "istio-injection=" + n.InjectionLabel
	case n.RevLabel != "":
		return "istio.io/rev=" + n.RevLabel
	}
	return ""
}

// Workload is a Deployment, StatefulSet or DaemonSet and the revisions of its pods.
type Workload struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Replicas  int32  `json:"replicas"`
	Ready     int32  `json:"ready"`
	// DesiredRevision is what a new pod would be injected with; empty when it would not be injected.
	DesiredRevision string `json:"desiredRevision,omitempty"`
	// InjectedRevisions are the revisions of the running pods' proxies ("" for pods without one).
	InjectedRevisions []string `json:"injectedRevisions"`
	Pods              int      `json:"pods"`
	NeedsRestart      bool     `json:"needsRestart"`
	OptOut            bool     `json:"optOut,omitempty"`
	// PinnedRevision is the pod template's own istio.io/rev label, which wins over the namespace's
	// istio.io/rev: relabelling the namespace does not move such a workload.
	PinnedRevision string `json:"pinnedRevision,omitempty"`
	Gateway        bool   `json:"gateway,omitempty"`
}

// Ref is "kind/name", as kubectl prints it.
func (w Workload) Ref() string { return lowerKind(w.Kind) + "/" + w.Name }

// Key is namespace/kind/name.
func (w Workload) Key() string { return w.Namespace + "/" + w.Ref() }

// Gateway is a Deployment running Istio gateway proxies.
type Gateway struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Revision  string   `json:"revision,omitempty"`
	Versions  []string `json:"versions"`
	Replicas  int32    `json:"replicas"`
	Ready     int32    `json:"ready"`
	Services  []string `json:"services"`
	Helm      bool     `json:"helm"`
	// GatewayAPI is the Gateway API Gateway (namespace/name) istiod deployed this gateway for; istiod
	// renders its proxy itself and re-deploys it when the revision the Gateway resolves to changes.
	GatewayAPI string `json:"gatewayAPI,omitempty"`
}

// Proxy is one proxy as the istiod it is connected to reports it.
type Proxy struct {
	ID        string            `json:"id"`
	Pod       string            `json:"pod"`
	Namespace string            `json:"namespace"`
	Workload  string            `json:"workload,omitempty"` // kind/name of the owning workload
	Type      string            `json:"type"`
	Istiod    string            `json:"istiod"`
	Revision  string            `json:"revision"`
	Version   string            `json:"version"`
	State     string            `json:"state"`
	Types     map[string]string `json:"types"`
}

func lowerKind(k string) string {
	switch k {
	case "Deployment":
		return "deployment"
	case "StatefulSet":
		return "statefulset"
	case "DaemonSet":
		return "daemonset"
	}
	return k
}

// UnmanagedPod is an injected pod that no Deployment, StatefulSet or DaemonSet owns: migrate-ns and
// tag-move --restart cannot move it, so it is reported with the step that does.
type UnmanagedPod struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	// Owner is its controller, "Job/NAME" or "ReplicaSet/NAME", or "" for none.
	Owner            string `json:"owner"`
	InjectedRevision string `json:"injectedRevision"`
	DesiredRevision  string `json:"desiredRevision,omitempty"`
	// NeedsRestart: its proxy is not on the revision its namespace selects.
	NeedsRestart bool `json:"needsRestart"`
	// Action is the manual step that moves it (a Job's next run moves by itself).
	Action string `json:"action"`
}

// Package checks holds every safety check of the upgrade runbook as pure functions over what was read
// from the cluster: precheck runs them all; the mutating steps run the guardrails that concern them.
package checks

import (
	"sort"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// Severity of a finding.
type Severity string

const (
	Error   Severity = "error"
	Warning Severity = "warning"
	Info    Severity = "info"
)

// Rank orders severities: error > warning > info.
func (s Severity) Rank() int {
	switch s {
	case Error:
		return 3
	case Warning:
		return 2
	case Info:
		return 1
	}
	return 0
}

// Finding is one problem (or fact) with the fix for it.
type Finding struct {
	Severity Severity `json:"severity"`
	Code     string   `json:"code"`
	Object   string   `json:"object"`
	Message  string   `json:"message"`
	Fix      string   `json:"fix,omitempty"`
}

// Input is everything the checks look at.
type Input struct {
	Snapshot *mesh.Snapshot
	Raw      *mesh.Inputs
	// Target is the revision being upgraded to (--revision); empty when not given.
	Target string
	// ServerVersion is the cluster's Kubernetes version, "1.36".
	ServerVersion string
	PDBs          []policyv1.PodDisruptionBudget
	HPAs          []autoscalingv2.HorizontalPodAutoscaler
	// CRDs are the names of installed CustomResourceDefinitions.
	CRDs []string
	// Gateways are Istio Gateway resources: namespace/name → selector.
	Gateways map[string]map[string]string
	// GatewayAPI are the Gateway API Gateways of Istio's classes (istio, istio-waypoint, …).
	GatewayAPI []mesh.GatewayAPIGateway
	// HelmReleases describe Istio's deployed Helm releases (namespace/name, chart, version, revision values).
	HelmReleases []string
	// MissingPermissions lists "verb resource" pairs the caller may not do.
	MissingPermissions []string
	// RunningPods are the running pods, for Gateway selectors.
	RunningPods []corev1.Pod
	// CRDVersions are the served versions of the Gateway API CRDs, by CRD name.
	CRDVersions map[string][]string
	// Analysis are the messages of Istio's configuration analysis; AnalysisError says why it did not run.
	Analysis      []istio.AnalysisMessage
	AnalysisError string
	// Requests is what the request gates will see in Prometheus (nil: not asked).
	Requests *RequestData
}

// Check is one named check.
type Check struct {
	Name string
	Run  func(in *Input) []Finding
}

// All is every check precheck runs, in report order.
var All = []Check{
	{"permissions", Permissions},
	{"kubernetes-version", KubernetesVersion},
	{"control-plane", ControlPlane},
	{"target-revision", TargetRevision},
	{"version-skew", VersionSkew},
	{"version-rules", VersionRules},
	{"ambient-versions", AmbientVersions},
	{"ambient", Ambient},
	{"crds", CRDs},
	{"gateway-api-crds", GatewayAPICRDs},
	{"root-ca", RootCA},
	{"webhooks", Webhooks},
	{"namespaces", Namespaces},
	{"data-plane", DataPlane},
	{"guardrails", Guardrails},
	{"gateways", Gateways},
	{"gateway-api", GatewayAPIFollowsTag},
	{"install-method", InstallMethod},
	{"gitops", GitOps},
	{"analysis", Analysis},
	{"request-metrics", RequestMetrics},
}

// Run runs checks and returns their findings, most severe first (stable within a severity).
func Run(in *Input, cs []Check) []Finding {
	out := []Finding{}
	for _, c := range cs {
		out = append(out, c.Run(in)...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Severity.Rank() > out[j].Severity.Rank() })
	return out
}

// Worst returns the highest severity among findings ("" for none).
func Worst(fs []Finding) Severity {
	var w Severity
	for _, f := range fs {
		if f.Severity.Rank() > w.Rank() {
			w = f.Severity
		}
	}
	return w
}

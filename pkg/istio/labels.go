// Package istio is the only importer of istio.io/istio: the xDS debug (syncz) client, Istio's label and
// annotation names, and tag webhook knowledge. istio.io/istio has no Go API promise, so everything
// else in this project talks to these small functions and plain types instead.
package istio

import (
	"encoding/json"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Label and annotation names Istio uses to select and record revisions.
const (
	LabelRev             = "istio.io/rev"
	LabelTag             = "istio.io/tag"
	LabelInjection       = "istio-injection"
	LabelSidecarInject   = "sidecar.istio.io/inject"
	LabelApp             = "app"
	LabelIstio           = "istio"
	AnnotationStatus     = "sidecar.istio.io/status"
	AnnotationTemplates  = "inject.istio.io/templates"
	LabelManagedGateway  = "gateway.istio.io/managed"
	IstiodApp            = "istiod"
	DefaultRevision      = "default"
	TagWebhookPrefix     = "istio-revision-tag-"
	InjectorPrefix       = "istio-sidecar-injector"
	DefaultValidatorName = "istiod-default-validator"
	ProxyContainer       = "istio-proxy"
)

// InjectedRevision returns the revision that injected a pod's sidecar, read from the
// sidecar.istio.io/status annotation (falling back to istio.io/rev), and whether it was injected.
// A gateway pod istiod rendered for a Gateway API Gateway is not injected but runs that istiod's proxy:
// its revision is its istio.io/rev annotation (or label).
func InjectedRevision(labels, annotations map[string]string) (string, bool) {
	raw, ok := annotations[AnnotationStatus]
	if !ok && labels[LabelManagedGateway] != "" {
		if r := annotations[LabelRev]; r != "" {
			return r, true
		}
		if r := labels[LabelRev]; r != "" {
			return r, true
		}
		return DefaultRevision, true
	}
	if !ok {
		return "", false
	}
	if r := statusRevision(raw); r != "" {
		return r, true
	}
	if r := annotations[LabelRev]; r != "" {
		return r, true
	}
	if r := labels[LabelRev]; r != "" {
		return r, true
	}
	return DefaultRevision, true
}

// statusRevisions memoises the revision each sidecar.istio.io/status value names: the pods of one
// template share one value, and decoding it for each of 5,000 pods was half of building a snapshot.
var statusRevisions sync.Map // raw annotation → revision, "" when it names none

func statusRevision(raw string) string {
	if r, ok := statusRevisions.Load(raw); ok {
		return r.(string)
	}
	var st struct {
		Revision string `json:"revision"`
	}
	if json.Unmarshal([]byte(raw), &st) != nil {
		st.Revision = ""
	}
	statusRevisions.Store(raw, st.Revision)
	return st.Revision
}

// RevisionOf returns the revision named by an object's istio.io/rev label; an istiod without one is
// the "default" revision.
func RevisionOf(labels map[string]string) string {
	if r := labels[LabelRev]; r != "" {
		return r
	}
	return DefaultRevision
}

// VersionFromImage returns the tag of an image reference ("docker.io/istio/pilot:1.30.0" → "1.30.0"),
// without digest or variant suffix ("-distroless").
func VersionFromImage(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	slash := strings.LastIndex(image, "/")
	colon := strings.LastIndex(image, ":")
	if colon <= slash {
		return ""
	}
	tag := image[colon+1:]
	for _, v := range []string{"-distroless", "-debug"} {
		tag = strings.TrimSuffix(tag, v)
	}
	return tag
}

// IsGatewayTemplate reports whether a pod template describes an Istio gateway proxy.
func IsGatewayTemplate(labels, annotations map[string]string) bool {
	if strings.Contains(annotations[AnnotationTemplates], "gateway") {
		return true
	}
	if labels[LabelManagedGateway] != "" {
		return true
	}
	switch labels[LabelIstio] {
	case "ingressgateway", "egressgateway":
		return true
	}
	return false
}

// NeverMatch is the selector istioctl gives the injector of the revision named default when the
// default tag takes over istio-injection=enabled: the webhook stays, and matches nothing.
func NeverMatch() *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"istio.io/deactivated": "never-match"}}
}

// Ambient mode's names: the namespace or pod label that enrols pods, the label that sends them through
// a waypoint, and the node agents' DaemonSets as Istio's charts name them.
const (
	LabelDataplaneMode = "istio.io/dataplane-mode"
	LabelUseWaypoint   = "istio.io/use-waypoint"
	DataplaneAmbient   = "ambient"
	ZtunnelDaemonSet   = "ztunnel"
	CNIDaemonSet       = "istio-cni-node"
	WaypointClass      = "istio-waypoint"
	EnvXDSAddress      = "XDS_ADDRESS"
)

// ZtunnelRevision is the istiod revision a ztunnel is pointed at: the ztunnel chart writes it as the
// istio.io/rev annotation and into XDS_ADDRESS (istiod-REV.NS.svc:15012; istiod.NS.svc is the
// non-revisioned default). The address wins: it is where the ztunnel really connects.
func ZtunnelRevision(annotations map[string]string, xdsAddress string) string {
	if xdsAddress != "" {
		host, _, _ := strings.Cut(xdsAddress, ".")
		if rev, ok := strings.CutPrefix(host, IstiodApp+"-"); ok {
			return rev
		}
		if host == IstiodApp {
			return DefaultRevision
		}
	}
	if r := annotations[LabelRev]; r != "" {
		return r
	}
	return DefaultRevision
}

// ZtunnelXDSAddress is the address the ztunnel chart points a ztunnel of revision rev at.
func ZtunnelXDSAddress(rev, istioNamespace string) string {
	host := IstiodApp
	if rev != "" && rev != DefaultRevision {
		host += "-" + rev
	}
	return host + "." + istioNamespace + ".svc:15012"
}

// ControlPlane names the objects Istio's installers (the istio-discovery chart, which istioctl renders
// too) create for one revision's control plane in one Istio namespace, by kind. A revision's objects are
// these names carrying its istio.io/rev label: a label alone also marks a gateway's Service,
// ServiceAccount and Role (istioctl's gateway component), which are never the control plane's.
func ControlPlane(revision, ns string) map[string][]string {
	s := "-" + revision
	if revision == "default" || revision == "" {
		s = "" // the non-revisioned install names its objects without a suffix
	}
	own := "istiod" + s
	return map[string][]string{
		"Deployment":                     {own},
		"Service":                        {own},
		"ServiceAccount":                 {own},
		"HorizontalPodAutoscaler":        {own},
		"PodDisruptionBudget":            {own},
		"Role":                           {own},
		"RoleBinding":                    {own},
		"ConfigMap":                      {"istio" + s, "istio-sidecar-injector" + s, "values" + s, "pilot-jwks-extra-cacerts" + s},
		"MutatingWebhookConfiguration":   {"istio-sidecar-injector" + s, "istio-sidecar-injector" + s + "-" + ns},
		"ValidatingWebhookConfiguration": {"istio-validator" + s + "-" + ns},
		"ClusterRole":                    {"istiod-clusterrole" + s + "-" + ns, "istiod-gateway-controller" + s + "-" + ns, "istio-reader-clusterrole" + s + "-" + ns},
		"ClusterRoleBinding":             {"istiod-clusterrole" + s + "-" + ns, "istiod-gateway-controller" + s + "-" + ns, "istio-reader-clusterrole" + s + "-" + ns},
	}
}

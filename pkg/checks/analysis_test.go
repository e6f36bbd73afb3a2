package checks

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// Analyzer messages of each class we surface become findings with their IST code, the object, our
// severity and a fix; the codes our own checks report are not repeated; a failed analysis is said.
func TestAnalysisFindings(t *testing.T) {
	in := clean()
	in.Analysis = []istio.AnalysisMessage{
		{Code: "IST0101", Level: "Error", Kind: "VirtualService", Namespace: "shop", Name: "web", Message: `Referenced gateway not found: "shop/gw"`, DocURL: "https://istio.io/latest/docs/reference/config/analysis/ist0101/"},
		{Code: "IST0108", Level: "Warning", Kind: "Pod", Namespace: "shop", Name: "web-1", Message: "Unknown annotation: x", DocURL: "https://istio.io/latest/docs/reference/config/analysis/ist0108/"},
		{Code: "IST0136", Level: "Info", Kind: "Deployment", Namespace: "shop", Name: "web", Message: "Annotation \"a\" is part of an alpha-phase feature", DocURL: "d"},
		{Code: "IST0123", Level: "Warning", Kind: "Namespace", Name: "shop", Message: "both labels"},
		{Code: "IST0139", Level: "Error", Kind: "MutatingWebhookConfiguration", Name: "x", Message: "overlap"},
	}
	got := map[string]Finding{}
	for _, f := range Analysis(in) {
		got[f.Code] = f
	}
	if len(got) != 3 {
		t.Fatalf("findings %+v, want IST0101, IST0108 and IST0136 (IST0123 and IST0139 are ours)", got)
	}
	if f := got["IST0101"]; f.Severity != Error || f.Object != "virtualservice/shop/web" || !strings.Contains(f.Fix, "istio.io/rev") {
		t.Errorf("IST0101: %+v", f)
	}
	if f := got["IST0108"]; f.Severity != Warning || f.Object != "pod/shop/web-1" || !strings.Contains(f.Fix, "ist0108") {
		t.Errorf("IST0108 (no known fix: Istio's page): %+v", f)
	}
	if f := got["IST0136"]; f.Severity != Info {
		t.Errorf("IST0136: %+v", f)
	}
	in.AnalysisError = "istio-upgrade-analyze not found"
	if fs := Analysis(in); len(fs) != 1 || fs[0].Code != "ANALYSIS_FAILED" {
		t.Errorf("a failed analysis: %+v", fs)
	}
}

func TestAnalysisRegressions(t *testing.T) {
	a := istio.AnalysisMessage{Code: "IST0101", Level: "Error", Kind: "VirtualService", Namespace: "shop", Name: "web", Message: "m"}
	w := istio.AnalysisMessage{Code: "IST0108", Level: "Warning", Kind: "Pod", Namespace: "shop", Name: "p", Message: "m"}
	i := istio.AnalysisMessage{Code: "IST0102", Level: "Info", Kind: "Namespace", Name: "shop", Message: "m"}
	errs, warns := AnalysisRegressions([]istio.AnalysisMessage{a}, []istio.AnalysisMessage{a, w, i})
	if len(errs) != 0 || len(warns) != 1 {
		t.Errorf("an error present before is not new; a new warning is: %v %v", errs, warns)
	}
	b := a
	b.Name = "other"
	if errs, _ := AnalysisRegressions([]istio.AnalysisMessage{a}, []istio.AnalysisMessage{b}); len(errs) != 1 {
		t.Errorf("the same code on another object is new: %v", errs)
	}
}

func TestGatewayAPICRDs(t *testing.T) {
	in := clean()
	in.CRDVersions = map[string][]string{
		"gateways.gateway.networking.k8s.io":   {"v1", "v1beta1"},
		"httproutes.gateway.networking.k8s.io": {"v1alpha2", "v1beta1"},
		"grpcroutes.gateway.networking.k8s.io": {"v1alpha2"},
		"tcproutes.gateway.networking.k8s.io":  {"v1alpha2"},
	}
	var got []string
	for _, f := range GatewayAPICRDs(in) {
		got = append(got, string(f.Severity)+" "+f.Code+" "+f.Object)
	}
	want := []string{
		"warning IST0172 customresourcedefinition/grpcroutes.gateway.networking.k8s.io",
		"warning IST0172 customresourcedefinition/httproutes.gateway.networking.k8s.io",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	in.CRDVersions["gateways.gateway.networking.k8s.io"] = []string{"v1alpha2"}
	if fs := GatewayAPICRDs(in); len(fs) != 4 || fs[0].Code != "IST0156" || fs[0].Severity != Error {
		t.Errorf("a Gateway CRD without v1beta1 is IST0156 (error): %+v", fs)
	}
}

func TestVersionRules(t *testing.T) {
	codes := func(in *Input) map[string][]string {
		out := map[string][]string{}
		for _, f := range VersionRules(in) {
			out[f.Code] = append(out[f.Code], f.Object)
		}
		return out
	}
	// The clean mesh: 1.30 proxies on 1-30, target 1-31 one minor ahead.
	if got := codes(clean()); len(got) != 0 {
		t.Errorf("clean: %v", got)
	}
	// A target two minors ahead of what serves.
	in := clean()
	in.Raw.IstiodDeployments[1] = istiod("1-31", "1.32.0", 2)
	in.Snapshot = mesh.Build(*in.Raw)
	if got := codes(in); len(got["TARGET_SKIPS_MINOR"]) != 1 {
		t.Errorf("skip: %v", got)
	}
	if why := SkipsMinor(in.Snapshot, "1-31"); !strings.Contains(why, "2 minors ahead of 1-30") {
		t.Errorf("SkipsMinor: %q", why)
	}
	if why := SkipsMinor(in.Snapshot, "1-30"); why != "" {
		t.Errorf("moving back to what serves is no skip: %q", why)
	}
	// A proxy newer than its istiod; a proxy of 1.29.1 meeting a 1.30 istiod (istio/istio#60486).
	in = clean()
	in.Raw.Syncz[0].Proxies[0].Version = "1.31.2"
	in.Raw.Syncz[0].Proxies[1].Version = "1.29.1"
	in.Raw.Syncz[0].Proxies[2].Version = "1.29.2"
	in.Snapshot = mesh.Build(*in.Raw)
	got := codes(in)
	if o := got["PROXY_AHEAD_OF_ISTIOD"]; len(o) != 1 || o[0] != "pod/shop/web-h-a" {
		t.Errorf("proxy ahead: %v", got)
	}
	if o := got["SKEW_HAZARD"]; len(o) != 1 || o[0] != "pod/shop/web-h-b" {
		t.Errorf("hazard (1.29.1 only, once): %v", got)
	}
	// The same proxy under an older istiod and no target: no hazard.
	in.Target = ""
	in.Raw.IstiodDeployments[0] = istiod("1-30", "1.29.0", 2)
	in.Snapshot = mesh.Build(*in.Raw)
	if o := codes(in)["SKEW_HAZARD"]; len(o) != 0 {
		t.Errorf("hazard without a 1.30 istiod: %v", o)
	}
}

func TestAmbientVersions(t *testing.T) {
	in := clean() // istiods 1.30.0 and 1.31.0
	ds := func(name, image string) appsv1.DaemonSet {
		return appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "istio-system"},
			Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}}}}}
	}
	in.Raw.DaemonSets = []appsv1.DaemonSet{
		ds("ztunnel", "docker.io/istio/ztunnel:1.30.0-distroless"),
		ds("istio-cni-node", "docker.io/istio/install-cni:1.32.0"),
		ds("fluentd", "docker.io/fluent/fluentd:1.16.0"),
	}
	var got []string
	for _, f := range AmbientVersions(in) {
		got = append(got, f.Code+" "+f.Object)
	}
	want := "AMBIENT_AHEAD_OF_ISTIOD daemonset/istio-system/istio-cni-node" // against the newest istiod only
	if strings.Join(got, " ") != want {
		t.Errorf("got %v", got)
	}
	in.Raw.DaemonSets = []appsv1.DaemonSet{ds("ztunnel", "docker.io/istio/ztunnel:1.29.3")}
	got = nil
	for _, f := range AmbientVersions(in) {
		got = append(got, f.Code+" "+f.Object)
	}
	if strings.Join(got, " ") != "AMBIENT_VERSION_SKEW daemonset/istio-system/ztunnel" {
		t.Errorf("ztunnel 1.29 under istiod 1.31: %v", got)
	}
}

package checks

import (
	"fmt"
	"sort"
	"strings"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
)

// analysisCovered are IST codes our own checks report, under their own codes and with fixes that name
// this plugin's commands: the analyzer's copy would say the same thing twice.
var analysisCovered = map[string]string{
	"IST0123": "NS_BOTH_LABELS",
	"IST0139": "INJECTOR_OVERLAP",
	"IST0142": "K8S_VERSION_UNSUPPORTED",
	"IST0141": "PERMISSIONS_MISSING",
}

// analysisFixes are the fixes we know for the analyzer messages upgrades meet most; others point at
// Istio's page for the code.
var analysisFixes = map[string]string{
	"IST0101": "create what it names, or fix the reference; an object labelled istio.io/rev for another revision is invisible to this one (remove the label or copy it for the new revision)",
	"IST0102": "label the namespace for a revision: kubectl istio-upgrade migrate-ns NS --to REV",
	"IST0103": "restart the workload so the injector adds the proxy: kubectl istio-upgrade migrate-ns NS --to REV",
	"IST0105": "restart the pods so they take the injector's image (migrate-ns restarts them onto the revision)",
	"IST0158": "restart the namespace's pods so they take the injector's image (migrate-ns restarts them onto the revision)",
	"IST0106": "fix the field the message names; istiod ignores an object that fails validation",
	"IST0109": "merge the VirtualServices that define the same host into one",
	"IST0112": "add a port to the destination",
	"IST0145": "give the Gateways distinct hosts or ports, or merge them",
	"IST0156": "upgrade the Gateway API CRDs (kubectl apply the standard install of a supported release)",
	"IST0172": "upgrade the Gateway API CRDs before the Istio release that requires v1",
	"IST0173": "fix the subset's labels, or label the pods it should select",
}

// AnalysisFinding turns one analyzer message into a finding: its IST code, the object it names, our
// severity for its level, and a fix where one is known (else Istio's page for the code).
func AnalysisFinding(m istio.AnalysisMessage) Finding {
	sev := Info
	switch m.Level {
	case "Error":
		sev = Error
	case "Warning":
		sev = Warning
	}
	fix := analysisFixes[m.Code]
	if fix == "" {
		fix = "see " + m.DocURL
	}
	return Finding{Severity: sev, Code: m.Code, Object: AnalysisObject(m), Message: m.Message, Fix: fix}
}

// AnalysisObject names a message's object the way findings do: kind/namespace/name, lower case.
func AnalysisObject(m istio.AnalysisMessage) string {
	kind := strings.ToLower(m.Kind)
	switch {
	case m.Name == "":
		return "cluster"
	case kind == "":
		kind = "object"
	}
	if m.Namespace == "" {
		return kind + "/" + m.Name
	}
	return kind + "/" + m.Namespace + "/" + m.Name
}

// Analysis reports Istio's configuration analysis (run by precheck into in.Analysis), less what our own
// checks already report.
func Analysis(in *Input) []Finding {
	if in.AnalysisError != "" {
		return []Finding{{Warning, "ANALYSIS_FAILED", "cluster", "Istio's configuration analysis did not run: " + in.AnalysisError,
			"rerun; `istioctl analyze -A` runs the same analyzers"}}
	}
	var out []Finding
	for _, m := range in.Analysis {
		if _, ok := analysisCovered[m.Code]; ok {
			continue
		}
		out = append(out, AnalysisFinding(m))
	}
	return out
}

// AnalysisRegressions compares a namespace's analysis after a step with before it: the messages that
// are new, errors and warnings apart (a message is the same when its code, object and text are).
func AnalysisRegressions(before, after []istio.AnalysisMessage) (errs, warns []istio.AnalysisMessage) {
	had := map[string]bool{}
	for _, m := range before {
		had[m.Key()] = true
	}
	for _, m := range after {
		if had[m.Key()] {
			continue
		}
		switch m.Level {
		case "Error":
			errs = append(errs, m)
		case "Warning":
			warns = append(warns, m)
		}
	}
	return errs, warns
}

// DescribeMessage is one message as a gate reports it: code, object, text.
func DescribeMessage(m istio.AnalysisMessage) string {
	return fmt.Sprintf("%s %s: %s", m.Code, AnalysisObject(m), m.Message)
}

// DescribeAnalysis is the messages' lines, sorted, joined for one report line.
func DescribeAnalysis(ms []istio.AnalysisMessage) string {
	lines := make([]string, 0, len(ms))
	for _, m := range ms {
		lines = append(lines, DescribeMessage(m))
	}
	sort.Strings(lines)
	return strings.Join(lines, "; ")
}

// gatewayAPIVersions are the served versions Istio needs of each Gateway API CRD (istioctl x precheck's
// rule: v1beta1 today, v1 for the kinds that are stable).
var gatewayAPIVersions = map[string][2]string{
	"gateways.gateway.networking.k8s.io":        {"v1beta1", "v1"},
	"gatewayclasses.gateway.networking.k8s.io":  {"v1beta1", "v1"},
	"httproutes.gateway.networking.k8s.io":      {"v1beta1", "v1"},
	"referencegrants.gateway.networking.k8s.io": {"v1beta1", ""},
	"grpcroutes.gateway.networking.k8s.io":      {"", "v1"},
}

// GatewayAPICRDs: Gateway API CRDs installed at versions the mesh's Istio does not process (IST0156,
// an error) or will not (IST0172, a warning), as istioctl x precheck reports them.
func GatewayAPICRDs(in *Input) []Finding {
	names := make([]string, 0, len(in.CRDVersions))
	for n := range in.CRDVersions {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []Finding
	for _, n := range names {
		need, ok := gatewayAPIVersions[n]
		if !ok {
			continue
		}
		served := in.CRDVersions[n]
		has := strings.Join(served, ",")
		if has == "" {
			has = "none"
		}
		contains := func(v string) bool {
			for _, s := range served {
				if s == v {
					return true
				}
			}
			return false
		}
		obj := "customresourcedefinition/" + n
		if need[0] != "" && !contains(need[0]) {
			out = append(out, Finding{Error, "IST0156", obj, fmt.Sprintf("The Gateway API CRD version %s is lower than the minimum version: %s", has, need[0]), analysisFixes["IST0156"]})
		}
		if need[1] != "" && !contains(need[1]) {
			out = append(out, Finding{Warning, "IST0172", obj, fmt.Sprintf("The Gateway API CRD version %s is lower than the minimum version: %s", has, need[1]), analysisFixes["IST0172"]})
		}
	}
	return out
}

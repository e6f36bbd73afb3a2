package journal

import (
	"reflect"
	"testing"
)

func ns(labels map[string]any) map[string]any {
	return map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "shop", "labels": labels}}
}

func TestCompareKeepsOutsideChanges(t *testing.T) {
	before := ns(map[string]any{"istio.io/rev": "1-30"})
	after := ns(map[string]any{"istio.io/rev": "1-31"})
	live := ns(map[string]any{"istio.io/rev": "1-31", "team": "payments-oncall"})
	d, fields := Compare(before, after, live, false)
	if len(d.Conflicts) != 0 || d.Kept != 1 || len(fields) != 1 || d.Changed[0] != `metadata.labels["istio.io/rev"]` {
		t.Fatalf("drift %+v fields %q", d, fields)
	}
	got := Desired(before, live, fields)
	want := ns(map[string]any{"istio.io/rev": "1-30", "team": "payments-oncall"})
	if !reflect.DeepEqual(got, want) {
		t.Errorf("desired %v\nwant    %v", got, want)
	}
}

func TestCompareConflictsOnAFieldTheStepChanged(t *testing.T) {
	d, _ := Compare(ns(map[string]any{"istio.io/rev": "1-30"}), ns(map[string]any{"istio.io/rev": "1-31"}), ns(map[string]any{"istio.io/rev": "1-29"}), false)
	if len(d.Conflicts) != 1 || d.Conflicts[0] != `metadata.labels["istio.io/rev"]` {
		t.Errorf("conflicts %q", d.Conflicts)
	}
	// The label the step added was removed by someone since: already as undo would leave it, and the
	// outside label stays.
	d, fields := Compare(ns(map[string]any{}), ns(map[string]any{"istio.io/rev": "1-31"}), ns(map[string]any{"team": "x"}), false)
	if len(d.Conflicts) != 0 || len(fields) != 0 {
		t.Errorf("a removed label: %+v %q", d, fields)
	}
}

func TestCompareAlreadyBack(t *testing.T) {
	before := ns(map[string]any{"istio.io/rev": "1-30"})
	d, fields := Compare(before, ns(map[string]any{"istio.io/rev": "1-31"}), before, false)
	if len(d.Conflicts) != 0 || len(fields) != 0 {
		t.Errorf("nothing to put back: %+v %q", d, fields)
	}
}

func webhook(service, caBundle string) map[string]any {
	return map[string]any{"kind": "MutatingWebhookConfiguration", "metadata": map[string]any{"name": "tag"},
		"webhooks": []any{map[string]any{"name": "rev.namespace.sidecar-injector.istio.io",
			"clientConfig": map[string]any{"caBundle": caBundle, "service": map[string]any{"name": service, "namespace": "istio-system"}}}}}
}

// istiod rotates caBundle after the step: never a conflict, and undo keeps the live bundle.
func TestCompareIgnoresCABundleRotation(t *testing.T) {
	before, after, live := webhook("istiod-1-30", "A"), webhook("istiod-1-31", "A"), webhook("istiod-1-31", "B")
	d, fields := Compare(before, after, live, false)
	if len(d.Conflicts) != 0 || len(fields) != 1 {
		t.Fatalf("drift %+v fields %q", d, fields)
	}
	if got := Desired(before, live, fields); !reflect.DeepEqual(got, webhook("istiod-1-30", "B")) {
		t.Errorf("desired %v", got)
	}
}

func TestCompareReplicasAreSettledNotConflicts(t *testing.T) {
	dep := func(n int64) map[string]any {
		return map[string]any{"kind": "Deployment", "spec": map[string]any{"replicas": n}}
	}
	d, fields := Compare(dep(2), dep(1), dep(3), false) // scaled by hand since
	if len(d.Conflicts) != 0 || len(fields) != 1 {
		t.Errorf("drift %+v fields %q", d, fields)
	}
	// The step kept the count: undo leaves whatever it is now (an autoscaler's, days later).
	if _, fields := Compare(dep(2), dep(2), dep(5), false); len(fields) != 0 {
		t.Errorf("a count the step never changed is written back: %q", fields)
	}
	// An autoscaler targets it: the count the step changed is the autoscaler's to set, unless it is 0
	// (where an autoscaler does nothing).
	if _, fields := Compare(dep(2), dep(1), dep(1), true); len(fields) != 0 {
		t.Errorf("an autoscaled count is written back: %q", fields)
	}
	if _, fields := Compare(dep(2), dep(0), dep(0), true); len(fields) != 1 {
		t.Errorf("an autoscaled Deployment the step scaled to 0 is not scaled back: %q", fields)
	}
}

// A map the step added whole (a Gateway's parametersRef) goes whole: no empty map is left behind for a
// schema that requires its fields, while its siblings stay.
func TestDesiredRemovesAnAddedMapWhole(t *testing.T) {
	gw := func(infra map[string]any) map[string]any {
		spec := map[string]any{"gatewayClassName": "istio"}
		if infra != nil {
			spec["infrastructure"] = infra
		}
		return map[string]any{"kind": "Gateway", "spec": spec}
	}
	ref := map[string]any{"parametersRef": map[string]any{"group": "", "kind": "ConfigMap", "name": "x"}}
	_, fields := Compare(gw(nil), gw(ref), gw(ref), false)
	if got := Desired(gw(nil), gw(ref), fields); !reflect.DeepEqual(got, gw(nil)) {
		t.Errorf("desired %v, want %v", got, gw(nil))
	}
	kept := map[string]any{"labels": map[string]any{"a": "b"}, "parametersRef": ref["parametersRef"]}
	_, fields = Compare(gw(map[string]any{"labels": map[string]any{"a": "b"}}), gw(kept), gw(kept), false)
	if got := Desired(gw(map[string]any{"labels": map[string]any{"a": "b"}}), gw(kept), fields); !reflect.DeepEqual(got, gw(map[string]any{"labels": map[string]any{"a": "b"}})) {
		t.Errorf("desired %v: the sibling must stay", got)
	}
}

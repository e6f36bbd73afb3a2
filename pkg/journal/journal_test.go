package journal

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func obj(apiVersion, kind, ns, name string, labels map[string]any, extra map[string]any) *unstructured.Unstructured {
	md := map[string]any{"name": name}
	if ns != "" {
		md["namespace"] = ns
	}
	if labels != nil {
		md["labels"] = labels
	}
	o := map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": md}
	for k, v := range extra {
		o[k] = v
	}
	return &unstructured.Unstructured{Object: o}
}

func newFakes(objs ...runtime.Object) (*Journal, *dynfake.FakeDynamicClient) {
	scheme := runtime.NewScheme()
	dc := dynfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{
		NamespaceRef("").GVR():       "NamespaceList",
		ConfigMapRef("", "").GVR():   "ConfigMapList",
		MutatingWebhookRef("").GVR(): "MutatingWebhookConfigurationList",
		DeploymentRef("", "").GVR():  "DeploymentList",
		hpaGVR:                       "HorizontalPodAutoscalerList",
	}, objs...)
	j := New(fake.NewClientset(), dc, "istio-system")
	j.Now = func() time.Time { return time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC) }
	return j, dc
}

func get(t *testing.T, dc *dynfake.FakeDynamicClient, ref ObjectRef) *unstructured.Unstructured {
	t.Helper()
	o, err := dc.Resource(ref.GVR()).Namespace(ref.Namespace).Get(context.Background(), ref.Name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return o
}

func TestRecordAndRestoreExactly(t *testing.T) {
	ctx := context.Background()
	ns := obj("v1", "Namespace", "", "shop", map[string]any{"istio-injection": "enabled", "team": "a"}, nil)
	wh := obj("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "", "istio-revision-tag-prod", map[string]any{"istio.io/rev": "1-30", "istio.io/tag": "prod"},
		map[string]any{"webhooks": []any{map[string]any{"name": "rev.namespace.sidecar-injector.istio.io", "clientConfig": map[string]any{"url": "https://istiod-1-30/inject"}}}})
	cm := obj("v1", "ConfigMap", "istio-system", "istio-1-30", map[string]any{"istio.io/rev": "1-30"}, map[string]any{"data": map[string]any{"mesh": "defaultConfig: {}"}})
	j, dc := newFakes(ns, wh, cm)
	nsRef, whRef, cmRef := NamespaceRef("shop"), MutatingWebhookRef("istio-revision-tag-prod"), ConfigMapRef("istio-system", "istio-1-30")
	newRef := DeploymentRef("istio-ingress", "gw-canary")

	before := map[ObjectRef]*unstructured.Unstructured{nsRef: get(t, dc, nsRef), whRef: get(t, dc, whRef), cmRef: get(t, dc, cmRef)}

	rec := j.Begin("migrate-ns", "kubectl istio-upgrade migrate-ns shop --to=1-31")
	if err := rec.Capture(ctx, nsRef, whRef, cmRef, newRef, nsRef); err != nil {
		t.Fatal(err)
	}
	if err := rec.Save(ctx); err != nil {
		t.Fatal(err)
	}
	if rec.Entry().ID != "0001" || len(rec.Entry().Objects) != 4 {
		t.Fatalf("entry %s with %d objects, want 0001 with 4 (a repeated capture is ignored)", rec.Entry().ID, len(rec.Entry().Objects))
	}

	// The step acts: relabel, move the tag, delete the ConfigMap, create a Deployment.
	n := get(t, dc, nsRef)
	n.SetLabels(map[string]string{"istio.io/rev": "1-31", "team": "a"})
	if _, err := dc.Resource(nsRef.GVR()).Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w := get(t, dc, whRef)
	w.SetLabels(map[string]string{"istio.io/rev": "1-31", "istio.io/tag": "prod"})
	_ = unstructured.SetNestedSlice(w.Object, []any{map[string]any{"name": "x", "clientConfig": map[string]any{"url": "https://istiod-1-31/inject"}}}, "webhooks")
	if _, err := dc.Resource(whRef.GVR()).Update(ctx, w, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := dc.Resource(cmRef.GVR()).Namespace("istio-system").Delete(ctx, cmRef.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	d := obj("apps/v1", "Deployment", "istio-ingress", "gw-canary", nil, map[string]any{"spec": map[string]any{"replicas": int64(1)}})
	if _, err := dc.Resource(newRef.GVR()).Namespace("istio-ingress").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Undo, from the stored entry (round trip through the ConfigMap).
	entries, err := j.List(ctx)
	if err != nil || len(entries) != 1 {
		t.Fatalf("list: %v %d", err, len(entries))
	}
	if entries[0].Step != "migrate-ns" || entries[0].User == "" || !entries[0].Time.Equal(j.Now()) {
		t.Errorf("entry header: %+v", entries[0])
	}
	actions, err := j.Restore(ctx, entries[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	verbs := map[string]string{}
	for _, a := range actions {
		verbs[a.Ref.Name] = a.Verb
	}
	want := map[string]string{"shop": "restored", "istio-revision-tag-prod": "restored", "istio-1-30": "recreated", "gw-canary": "deleted"}
	if !equality.Semantic.DeepEqual(verbs, want) {
		t.Errorf("actions %v, want %v", verbs, want)
	}
	for ref, b := range before {
		after := get(t, dc, ref)
		if after == nil {
			t.Errorf("%s missing after undo", ref)
			continue
		}
		if !equality.Semantic.DeepEqual(Sanitize(after).Object, Sanitize(b).Object) {
			t.Errorf("%s not restored exactly:\n got %v\nwant %v", ref, Sanitize(after).Object, Sanitize(b).Object)
		}
	}
	if get(t, dc, newRef) != nil {
		t.Error("the Deployment the step created should be deleted by undo")
	}
	// A second restore changes nothing.
	actions, err = j.Restore(ctx, entries[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range actions {
		if a.Verb != "unchanged" {
			t.Errorf("second undo: %s %s, want unchanged", a.Ref, a.Verb)
		}
	}
}

func TestIDsIncrementAndUpdate(t *testing.T) {
	ctx := context.Background()
	j, _ := newFakes()
	for i, want := range []string{"0001", "0002", "0003"} {
		r := j.Begin("tag-move", "kubectl istio-upgrade tag-move prod")
		if err := r.Save(ctx); err != nil {
			t.Fatal(err)
		}
		if r.Entry().ID != want {
			t.Errorf("entry %d: id %s, want %s", i, r.Entry().ID, want)
		}
	}
	e, err := j.Get(ctx, "0002")
	if err != nil {
		t.Fatal(err)
	}
	e.UndoneBy = "0003"
	if err := j.Update(ctx, e); err != nil {
		t.Fatal(err)
	}
	e2, _ := j.Get(ctx, "0002")
	if e2.UndoneBy != "0003" {
		t.Errorf("update not stored: %+v", e2)
	}
	cm, _ := j.Kube.CoreV1().ConfigMaps("istio-system").Get(ctx, NamePrefix+"0002", metav1.GetOptions{})
	if cm.Labels[LabelJournal] != "entry" || cm.Labels[LabelStep] != "tag-move" || len(cm.BinaryData[dataKey]) == 0 {
		t.Errorf("journal ConfigMap: %+v", cm.ObjectMeta)
	}
}

func TestLabelValue(t *testing.T) {
	for in, want := range map[string]string{"migrate-ns": "migrate-ns", "tag-move --restart": "tag-move-restart", "--x y--": "x-y", "a/b": "a-b"} {
		if got := labelValue(in); got != want {
			t.Errorf("labelValue(%q) = %q, want %q", in, got, want)
		}
	}
	if got := labelValue(strings.Repeat("a", 80)); len(got) != 63 {
		t.Errorf("long value: %d chars", len(got))
	}
}

func TestOverwrites(t *testing.T) {
	canary, old, hpa := DeploymentRef("gw", "canary"), DeploymentRef("gw", "old"), HPARef("gw", "canary")
	ns := NamespaceRef("app")
	entry := func(id string, refs ...ObjectRef) *Entry {
		e := &Entry{ID: id}
		for _, r := range refs {
			e.Objects = append(e.Objects, Object{Ref: r})
		}
		return e
	}
	ids := func(es []*Entry) []string {
		out := []string{}
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	tests := []struct {
		name    string
		entries []*Entry
		undo    int
		want    []string
	}{
		{"last entry", []*Entry{entry("0001", canary, hpa), entry("0002", canary, old)}, 1, []string{}},
		{"a later shift touched the canary", []*Entry{entry("0001", canary, hpa), entry("0002", canary, old), entry("0003", old, canary)}, 0, []string{"0002", "0003"}},
		{"later entry on other objects", []*Entry{entry("0001", canary, hpa), entry("0002", ns)}, 0, []string{}},
		{"later entry undone", func() []*Entry {
			a, b, c := entry("0001", canary), entry("0002", canary), entry("0003", canary)
			b.UndoneBy, c.UndoOf = "0003", "0002"
			return []*Entry{a, b, c}
		}(), 0, []string{}},
		{"a later undo of an earlier entry", func() []*Entry {
			a, b, c := entry("0001", canary), entry("0002", canary), entry("0003", canary)
			a.UndoneBy, c.UndoOf = "0003", "0001"
			return []*Entry{a, b, c}
		}(), 1, []string{"0003"}},
		{"entry not in the list", []*Entry{entry("0001", canary)}, -1, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := entry("9999", canary)
			if tt.undo >= 0 {
				e = tt.entries[tt.undo]
			}
			if got := ids(Overwrites(tt.entries, e)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Overwrites = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRestoreRetriesConflicts: a controller writing status between our read and our update must not
// fail an undo halfway.
func TestRestoreRetriesConflicts(t *testing.T) {
	ctx := context.Background()
	ns := obj("v1", "Namespace", "", "shop", map[string]any{"istio.io/rev": "1-31"}, nil)
	j, dc := newFakes(ns)
	conflicts := 0
	dc.PrependReactor("update", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
		if conflicts < 2 {
			conflicts++
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "namespaces"}, "shop", errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	recorded := obj("v1", "Namespace", "", "shop", map[string]any{"istio.io/rev": "1-30"}, nil)
	a, err := j.RestoreObject(ctx, Object{Ref: NamespaceRef("shop"), Existed: true, State: recorded}, nil)
	if err != nil || a.Verb != "restored" || conflicts != 2 {
		t.Fatalf("RestoreObject = %+v, %v after %d conflicts", a, err, conflicts)
	}
	if got := get(t, dc, NamespaceRef("shop")).GetLabels()["istio.io/rev"]; got != "1-30" {
		t.Errorf("label %q after restore, want 1-30", got)
	}
}

// Several workloads of one namespace are read with one LIST, before and after; one or two with a GET
// each; the states recorded are the same either way, an absent object recorded as absent.
func TestCaptureListsANamespacesWorkloads(t *testing.T) {
	ctx := context.Background()
	var objs []runtime.Object
	for _, name := range []string{"a", "b", "c", "other"} {
		objs = append(objs, obj("apps/v1", "Deployment", "shop", name, nil, map[string]any{"spec": map[string]any{"replicas": int64(2)}}))
	}
	objs = append(objs, obj("apps/v1", "Deployment", "lone", "d", nil, nil))
	j, dc := newFakes(objs...)
	rec := j.Begin("migrate-ns", "migrate-ns")
	refs := []ObjectRef{DeploymentRef("shop", "a"), DeploymentRef("shop", "b"), DeploymentRef("shop", "c"), DeploymentRef("shop", "gone"), DeploymentRef("lone", "d")}
	if err := rec.Capture(ctx, refs...); err != nil {
		t.Fatal(err)
	}
	if err := rec.CaptureAfter(ctx); err != nil {
		t.Fatal(err)
	}
	var lists, gets []string
	for _, a := range dc.Actions() {
		switch a.GetVerb() {
		case "list":
			lists = append(lists, a.GetNamespace())
		case "get":
			gets = append(gets, a.GetNamespace())
		}
	}
	if !reflect.DeepEqual(lists, []string{"shop", "shop"}) || !reflect.DeepEqual(gets, []string{"lone", "lone"}) {
		t.Errorf("lists in %v, gets in %v; want one list of shop and one get in lone, before and after", lists, gets)
	}
	objects := rec.Entry().Objects
	if len(objects) != len(refs) {
		t.Fatalf("%d objects recorded, want %d", len(objects), len(refs))
	}
	for i, o := range objects {
		want := get(t, dc, refs[i])
		switch {
		case o.Ref != refs[i]:
			t.Errorf("object %d is %s, want %s", i, o.Ref, refs[i])
		case want == nil && (o.Existed || !o.Gone):
			t.Errorf("%s is absent but recorded as existing (%v) or not gone after (%v)", o.Ref, o.Existed, o.Gone)
		case want != nil && (!o.Existed || o.Gone || !equality.Semantic.DeepEqual(o.State.Object["spec"], want.Object["spec"]) || o.UID != string(want.GetUID())):
			t.Errorf("%s recorded as %+v, is %v", o.Ref, o, want.Object)
		}
	}
}

// Undo of a step that changed a gateway's template, days later, with an HPA scaling it since: the
// template goes back, the replica count the HPA set stays. The control: without the HPA, a count the
// step changed is put back.
func TestRestoreLeavesAnAutoscaledCount(t *testing.T) {
	ctx := context.Background()
	dep := func(rev string, replicas int64) *unstructured.Unstructured {
		return obj("apps/v1", "Deployment", "istio-ingress", "gw", nil, map[string]any{"spec": map[string]any{"replicas": replicas,
			"template": map[string]any{"metadata": map[string]any{"labels": map[string]any{"istio.io/rev": rev}}}}})
	}
	hpa := obj("autoscaling/v2", "HorizontalPodAutoscaler", "istio-ingress", "gw", nil, map[string]any{"spec": map[string]any{
		"scaleTargetRef": map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": "gw"}}})
	ref := DeploymentRef("istio-ingress", "gw")
	o := Object{Ref: ref, Existed: true, State: dep("1-30", 2), Left: true, After: dep("1-31", 3)}
	for _, c := range []struct {
		name string
		objs []runtime.Object
		want int64
	}{
		{"autoscaled", []runtime.Object{dep("1-31", 7), hpa}, 7},
		{"not autoscaled", []runtime.Object{dep("1-31", 3)}, 2},
	} {
		j, dc := newFakes(c.objs...)
		if _, err := j.RestoreObject(ctx, o, nil); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got := get(t, dc, ref)
		n, _, _ := unstructured.NestedInt64(got.Object, "spec", "replicas")
		rev, _, _ := unstructured.NestedString(got.Object, "spec", "template", "metadata", "labels", "istio.io/rev")
		if n != c.want || rev != "1-30" {
			t.Errorf("%s: after undo %d replicas on %s, want %d on 1-30", c.name, n, rev, c.want)
		}
	}
}

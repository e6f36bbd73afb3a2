// Package journaltest builds the fake cluster undo tests run against: the same objects behind the
// typed and the dynamic fake clients (steps use one, the journal the other), and every write in order.
package journaltest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"strings"
	"testing"

	admregv1 "k8s.io/api/admissionregistration/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// Cluster is a fake cluster with a journal.
type Cluster struct {
	Clients *kube.Clients
	Journal *journal.Journal
	Dynamic *dynfake.FakeDynamicClient
	// Writes are "verb resource name" for every create, update, patch and delete, by either client.
	Writes []string
	// Sent are the same writes with the options they were sent with.
	Sent []Sent
	// Deny, when set, says which SelfSubjectAccessReviews the apiserver refuses.
	Deny func(authzv1.ResourceAttributes) bool
}

// Sent is one write and its options.
type Sent struct {
	Write   string
	DryRun  []string
	Manager string
	// Precondition is the UID a delete required.
	Precondition string
}

// New returns a cluster holding objs, which must carry their apiVersion and kind. Built-in kinds live
// in one store that both clients read and write, as on a real apiserver: what a step writes through the
// typed client, undo reads back through the dynamic one. Other kinds (Istio's, Gateway API's) are
// *unstructured.Unstructured and live in the dynamic client alone.
func New(t *testing.T, objs ...runtime.Object) *Cluster {
	t.Helper()
	c := &Cluster{}
	var typed, custom []runtime.Object
	kinds := map[schema.GroupVersionResource]string{}
	for _, o := range objs {
		if m, ok := o.(metav1.Object); ok && m.GetUID() == "" { // as an apiserver would: steps send UID preconditions
			m.SetUID(types.UID("uid-" + o.GetObjectKind().GroupVersionKind().Kind + "-" + m.GetNamespace() + "-" + m.GetName()))
		}
		if _, ok := o.(*unstructured.Unstructured); ok {
			custom = append(custom, o)
			gvk := o.GetObjectKind().GroupVersionKind()
			kinds[resourceOf(gvk)] = gvk.Kind + "List"
			continue
		}
		typed = append(typed, o)
	}
	// CRDs steps list whether or not a test holds any.
	for gk, r := range crdResources {
		kinds[schema.GroupVersionResource{Group: gk.Group, Version: "v1", Resource: r}] = gk.Kind + "List"
	}
	kc := fake.NewClientset(typed...)
	builtin := map[schema.GroupVersionResource]bool{}
	for gvk := range scheme.Scheme.AllKnownTypes() {
		// Others may have registered custom kinds in client-go's scheme (Istio's packages add CRDs); the
		// typed fake does not hold them.
		if _, custom := crdResources[schema.GroupKind{Group: gvk.Group, Kind: strings.TrimSuffix(gvk.Kind, "List")}]; custom {
			continue
		}
		if base, ok := strings.CutSuffix(gvk.Kind, "List"); ok && base != "" && gvk.Version != "" && gvk.Version != runtime.APIVersionInternal {
			gvr, _ := meta.UnsafeGuessKindToResource(gvk.GroupVersion().WithKind(base))
			kinds[gvr], builtin[gvr] = gvk.Kind, true
		}
	}
	dc := dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), kinds)
	for _, o := range custom {
		// Create with the real resource name: the tracker's own guess says "gatewaies".
		if err := dc.Tracker().Create(resourceOf(o.GetObjectKind().GroupVersionKind()), o, o.(metav1.Object).GetNamespace()); err != nil {
			t.Fatal(err)
		}
	}
	// Built-in kinds: the dynamic client's requests are served from the typed client's store.
	shared := k8stesting.ObjectReaction(kc.Tracker())
	dc.PrependReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if !builtin[a.GetResource()] {
			return false, nil, nil
		}
		a, err := toTyped(a)
		if err != nil {
			return true, nil, err
		}
		handled, obj, err := shared(a)
		if err != nil || obj == nil {
			return handled, obj, err
		}
		u, err := toUnstructured(obj)
		return handled, u, err
	})
	record := func(dynamic bool) k8stesting.ReactionFunc {
		return func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.GetSubresource() == "token" { // a TokenRequest to ask istiod: changes nothing
				return false, nil, nil
			}
			var s Sent
			var name string
			switch x := a.(type) {
			case k8stesting.CreateActionImpl:
				name, s.DryRun, s.Manager = x.GetObject().(metav1.Object).GetName(), x.CreateOptions.DryRun, x.CreateOptions.FieldManager
			case k8stesting.UpdateActionImpl:
				name, s.DryRun, s.Manager = x.GetObject().(metav1.Object).GetName(), x.UpdateOptions.DryRun, x.UpdateOptions.FieldManager
			case k8stesting.PatchActionImpl:
				name, s.DryRun, s.Manager = x.Name, x.PatchOptions.DryRun, x.PatchOptions.FieldManager
			case k8stesting.DeleteActionImpl:
				name, s.DryRun = x.Name, x.DeleteOptions.DryRun
				if p := x.DeleteOptions.Preconditions; p != nil && p.UID != nil {
					s.Precondition = string(*p.UID)
				}
			default:
				return false, nil, nil
			}
			s.Write = a.GetVerb() + " " + a.GetResource().Resource + " " + name
			c.Writes = append(c.Writes, s.Write)
			c.Sent = append(c.Sent, s)
			if len(s.DryRun) > 0 {
				return dryRun(a, kc.Tracker(), dc.Tracker(), dynamic, builtin[a.GetResource()])
			}
			return false, nil, nil
		}
	}
	kc.PrependReactor("*", "*", record(false))
	dc.PrependReactor("*", "*", record(true))
	// The apiserver's answer to "may I?": yes, unless Deny says no.
	kc.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authzv1.SelfSubjectAccessReview).DeepCopy()
		r.Status.Allowed = c.Deny == nil || !c.Deny(*r.Spec.ResourceAttributes)
		return true, r, nil
	})
	// Rules reviews say they are incomplete (as with a webhook authorizer): every access is then asked
	// on its own, and Deny decides.
	kc.PrependReactor("create", "selfsubjectrulesreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, &authzv1.SelfSubjectRulesReview{Status: authzv1.SubjectRulesReviewStatus{Incomplete: true}}, nil
	})
	c.Clients = &kube.Clients{Kube: kc, Dynamic: dc}
	c.Journal = journal.New(kc, dc, "istio-system")
	c.Dynamic = dc
	return c
}

// dryRun answers a dryRun write as the apiserver does, without storing anything: a create or update
// returns the object sent, a patch the object as it is (unpatched: close enough for what steps read
// back), a delete nothing. Built-in kinds live in the typed store; the dynamic client gets them as
// unstructured objects.
func dryRun(a k8stesting.Action, typed, custom k8stesting.ObjectTracker, dynamicClient, builtin bool) (bool, runtime.Object, error) {
	switch x := a.(type) {
	case k8stesting.CreateActionImpl:
		if pod, ok := x.Object.(*corev1.Pod); ok && !dynamicClient {
			return true, inject(typed, pod), nil
		}
		return true, x.Object, nil
	case k8stesting.UpdateActionImpl:
		return true, x.Object, nil
	case k8stesting.PatchActionImpl:
		if !builtin {
			obj, err := custom.Get(x.Resource, x.Namespace, x.Name)
			return true, obj, err
		}
		obj, err := typed.Get(x.Resource, x.Namespace, x.Name)
		if err != nil || !dynamicClient {
			return true, obj, err
		}
		u, err := toUnstructured(obj)
		return true, u, err
	}
	return true, nil, nil
}

// crdResources are the resources of the custom kinds steps read.
var crdResources = map[schema.GroupKind]string{
	{Group: "gateway.networking.k8s.io", Kind: "Gateway"}:             "gateways",
	{Group: "networking.istio.io", Kind: "Gateway"}:                   "gateways",
	{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}: "customresourcedefinitions",
	{Group: "telemetry.istio.io", Kind: "Telemetry"}:                  "telemetries",
}

func resourceOf(gvk schema.GroupVersionKind) schema.GroupVersionResource {
	if r, ok := crdResources[gvk.GroupKind()]; ok {
		return gvk.GroupVersion().WithResource(r)
	}
	gvr, _ := meta.UnsafeGuessKindToResource(gvk)
	return gvr
}

// toTyped turns the unstructured object of a dynamic create or update into its typed form, for the
// typed client's store.
func toTyped(a k8stesting.Action) (k8stesting.Action, error) {
	convert := func(o runtime.Object) (runtime.Object, error) {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			return o, nil
		}
		typed, err := scheme.Scheme.New(u.GroupVersionKind())
		if err != nil {
			return nil, err
		}
		return typed, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, typed)
	}
	var err error
	switch x := a.(type) {
	case k8stesting.CreateActionImpl:
		x.Object, err = convert(x.Object)
		return x, err
	case k8stesting.UpdateActionImpl:
		x.Object, err = convert(x.Object)
		return x, err
	}
	return a, nil
}

// toUnstructured is what the apiserver sends the dynamic client: apiVersion and kind set, on a list's
// items too.
func toUnstructured(obj runtime.Object) (runtime.Object, error) {
	gvks, _, err := scheme.Scheme.ObjectKinds(obj)
	if err != nil {
		return nil, err
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(gvks[0])
	if !meta.IsListType(obj) {
		return u, nil
	}
	list, err := u.ToList()
	if err != nil {
		return nil, err
	}
	item := gvks[0].GroupVersion().WithKind(strings.TrimSuffix(gvks[0].Kind, "List"))
	for i := range list.Items {
		list.Items[i].SetGroupVersionKind(item)
	}
	return list, nil
}

// Unstructured converts a typed object.
func Unstructured(t *testing.T, o runtime.Object) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}

// Recorded is o as a journal entry records it.
func Recorded(t *testing.T, ref journal.ObjectRef, o runtime.Object) journal.Object {
	t.Helper()
	return journal.Object{Ref: ref, Existed: true, State: journal.Sanitize(Unstructured(t, o))}
}

// inject is the sidecar injector's answer to a dry-run pod: the revision its namespace selects
// (istio.io/rev, through a tag's webhook; istio-injection=enabled is the default tag), or none.
func inject(typed k8stesting.ObjectTracker, pod *corev1.Pod) *corev1.Pod {
	out := pod.DeepCopy()
	o, err := typed.Get(corev1.SchemeGroupVersion.WithResource("namespaces"), "", pod.Namespace)
	if err != nil {
		return out
	}
	labels := o.(metav1.Object).GetLabels()
	rev := labels[istio.LabelRev]
	if rev == "" && labels[istio.LabelInjection] == "enabled" {
		rev = istio.DefaultRevision
	}
	if rev == "" {
		return out
	}
	rev = ResolveTag(typed, rev)
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[istio.AnnotationStatus] = `{"revision":"` + rev + `"}`
	return out
}

// ResolveTag is the revision the tag webhook named rev points at, or rev itself when no tag is so
// named: how the injector a label selects is found.
func ResolveTag(typed k8stesting.ObjectTracker, rev string) string {
	if l, err := typed.List(admregv1.SchemeGroupVersion.WithResource("mutatingwebhookconfigurations"),
		admregv1.SchemeGroupVersion.WithKind("MutatingWebhookConfiguration"), ""); err == nil {
		for _, w := range l.(*admregv1.MutatingWebhookConfigurationList).Items {
			if w.Labels[istio.LabelTag] == rev {
				return w.Labels[istio.LabelRev]
			}
		}
	}
	return rev
}

// Planted is a ConfigMap shaped like an entry of this journal, as anyone who may write ConfigMaps in
// the Istio namespace could make it: the right name, label and encoding, a signature of the right
// shape that no key made.
func Planted(t *testing.T, e *journal.Entry) *corev1.ConfigMap {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(e); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: journal.NamePrefix + e.ID, Namespace: "istio-system",
			Labels:      map[string]string{journal.LabelJournal: "entry", journal.LabelStep: e.Step, "app.kubernetes.io/managed-by": journal.ManagedBy},
			Annotations: map[string]string{journal.AnnotationSignature: strings.Repeat("ab", 32), journal.AnnotationSeq: "1"}},
		BinaryData: map[string][]byte{"entry.json.gz": buf.Bytes()},
	}
}

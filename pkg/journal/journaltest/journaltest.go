// Package journaltest builds the fake cluster undo tests run against: the same objects behind the
// typed and the dynamic fake clients (steps use one, the journal the other), and every write in order.
package journaltest

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

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
}

// New returns a cluster holding objs, which must carry their apiVersion and kind.
func New(t *testing.T, objs ...runtime.Object) *Cluster {
	t.Helper()
	c := &Cluster{}
	kc := fake.NewClientset(objs...)
	kinds := map[schema.GroupVersionResource]string{}
	var dyn []runtime.Object
	for _, o := range objs {
		gvk := o.GetObjectKind().GroupVersionKind()
		gvr, _ := meta.UnsafeGuessKindToResource(gvk)
		kinds[gvr] = gvk.Kind + "List"
		dyn = append(dyn, Unstructured(t, o))
	}
	dc := dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), kinds, dyn...)
	record := func(a k8stesting.Action) (bool, runtime.Object, error) {
		var name string
		switch a.GetVerb() {
		case "create", "update":
			name = a.(interface{ GetObject() runtime.Object }).GetObject().(metav1.Object).GetName()
		case "patch", "delete":
			name = a.(interface{ GetName() string }).GetName()
		default:
			return false, nil, nil
		}
		c.Writes = append(c.Writes, a.GetVerb()+" "+a.GetResource().Resource+" "+name)
		return false, nil, nil
	}
	kc.PrependReactor("*", "*", record)
	dc.PrependReactor("*", "*", record)
	c.Clients = &kube.Clients{Kube: kc, Dynamic: dc}
	c.Journal = journal.New(kc, dc, "istio-system")
	c.Dynamic = dc
	return c
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

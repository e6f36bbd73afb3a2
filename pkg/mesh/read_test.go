package mesh

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"
	"k8s.io/client-go/rest"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// TestReadWithFakeClient checks that Read lists every input it needs (without syncz, which fakes cannot serve).
func TestReadWithFakeClient(t *testing.T) {
	in := midUpgrade()
	objs := inputObjects(in)
	c := &kube.Clients{Kube: fake.NewClientset(objs...)}
	s, err := Read(context.Background(), c, ReadOptions{IstioNamespace: "istio-system"})
	if err != nil {
		t.Fatal(err)
	}
	in.Syncz = nil
	want := Build(in)
	if len(s.Revisions) != len(want.Revisions) || len(s.Namespaces) != len(want.Namespaces) || len(s.Workloads) != len(want.Workloads) ||
		len(s.Gateways) != 1 || len(s.Tags) != 2 || s.ProxiesRead {
		t.Errorf("Read = %d revisions %d namespaces %d workloads %d gateways %d tags (proxiesRead %v); want %d %d %d 1 2 false",
			len(s.Revisions), len(s.Namespaces), len(s.Workloads), len(s.Gateways), len(s.Tags), s.ProxiesRead,
			len(want.Revisions), len(want.Namespaces), len(want.Workloads))
	}
	// Scoped to one namespace.
	s, err = Read(context.Background(), c, ReadOptions{IstioNamespace: "istio-system", Namespace: "moved"})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Namespaces) != 1 || len(s.Workloads) != 2 || len(s.Revisions) != 2 {
		t.Errorf("-n moved: %d namespaces, %d workloads, %d revisions", len(s.Namespaces), len(s.Workloads), len(s.Revisions))
	}
	if _, err := Read(context.Background(), c, ReadOptions{IstioNamespace: "istio-system", Namespace: "nope"}); err == nil {
		t.Error("reading a missing namespace must fail")
	}
}

// Reading pods as metadata (status) gives the very snapshot reading them whole does: the JSON is
// byte-identical apart from the read time, all namespaces and one.
func TestReadPodMetadataSameSnapshot(t *testing.T) {
	in := midUpgrade()
	in.Namespaces = append(in.Namespaces, ns("amb", map[string]string{istio.LabelDataplaneMode: istio.DataplaneAmbient}))
	amb := pod("amb", "reviews", "a", "")
	amb.Spec.NodeName = "node-0"
	zt := pod("istio-system", "ztunnel", "a", "")
	zt.OwnerReferences = []metav1.OwnerReference{{Kind: "DaemonSet", Name: istio.ZtunnelDaemonSet, Controller: ptr(true)}}
	zt.Spec.NodeName = "node-0"
	zt.Spec.Containers = []corev1.Container{{Name: "istio-proxy", Image: "docker.io/istio/ztunnel:1.30.0"}}
	// An injection status without its revision: the revision is then read from the pod's istio.io/rev
	// annotation (older injectors), so that annotation must survive the metadata read. Another
	// annotation must not change anything.
	old := pod("moved", "batch", "b", "")
	old.Annotations[istio.AnnotationStatus] = `{"containers":["istio-proxy"]}`
	old.Annotations[istio.LabelRev] = "1-30"
	old.Annotations["prometheus.io/scrape"] = "true"
	in.Pods = append(in.Pods, amb, zt, old)
	in.DaemonSets = append(in.DaemonSets, appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: istio.ZtunnelDaemonSet, Namespace: "istio-system"}})
	var objs, metas []runtime.Object
	for _, o := range inputObjects(in) {
		objs = append(objs, o)
		if p, ok := o.(*corev1.Pod); ok {
			metas = append(metas, &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: p.ObjectMeta})
		}
	}
	scheme := runtime.NewScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c := &kube.Clients{Kube: fake.NewClientset(objs...), Metadata: metadatafake.NewSimpleMetadataClient(scheme, metas...)}
	for _, scope := range []string{"", "moved", "amb"} {
		read := func(meta bool) string {
			s, err := Read(context.Background(), c, ReadOptions{IstioNamespace: "istio-system", Namespace: scope, PodMetadata: meta})
			if err != nil {
				t.Fatal(err)
			}
			s.ReadAt = time.Time{}
			b, err := json.MarshalIndent(s, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		whole, meta := read(false), read(true)
		if whole != meta {
			t.Errorf("-n %q: the snapshot from pod metadata differs from the one from whole pods:\n%s\n---\n%s", scope, whole, meta)
		}
		if scope == "" && !strings.Contains(whole, `"ambientPods": 1`) || scope == "moved" && !strings.Contains(whole, `"1-30"`) {
			t.Errorf("the fixture has no ambient pod or no pod injected by istio.io/rev: the test would not see one missing\n%s", whole)
		}
	}
}

// inputObjects are the objects of in, for a fake clientset.
func inputObjects(in Inputs) []runtime.Object {
	var objs []runtime.Object
	for i := range in.IstiodDeployments {
		objs = append(objs, &in.IstiodDeployments[i])
	}
	for i := range in.IstiodPods {
		objs = append(objs, &in.IstiodPods[i])
	}
	for i := range in.MutatingWebhooks {
		objs = append(objs, &in.MutatingWebhooks[i])
	}
	for i := range in.ValidatingWebhooks {
		objs = append(objs, &in.ValidatingWebhooks[i])
	}
	for i := range in.ConfigMaps {
		objs = append(objs, &in.ConfigMaps[i])
	}
	for i := range in.Namespaces {
		objs = append(objs, &in.Namespaces[i])
	}
	for i := range in.Deployments {
		objs = append(objs, &in.Deployments[i])
	}
	for i := range in.Pods {
		objs = append(objs, &in.Pods[i])
	}
	for i := range in.Services {
		objs = append(objs, &in.Services[i])
	}
	for i := range in.DaemonSets {
		objs = append(objs, &in.DaemonSets[i])
	}
	return objs
}

// The metadata list of a real apiserver is one unpaged protobuf LIST decoded item by item: served by a
// test server, it gives the pods the metadata client's paged list gives, with only the annotations a
// snapshot reads, and a damaged response is an error.
func TestStreamPodMetadata(t *testing.T) {
	in := midUpgrade()
	var items []metav1.PartialObjectMetadata
	var metas []runtime.Object
	for i, p := range in.Pods {
		p.Annotations["prometheus.io/scrape"] = "true"
		p.Labels["version"] = "v1"
		if i == 0 {
			t := metav1.Unix(1796083200, 0) // local, as protobuf decodes it
			p.DeletionTimestamp = &t
		}
		p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate}}
		m := metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: p.ObjectMeta}
		items = append(items, m)
		metas = append(metas, &m)
	}
	scheme := runtime.NewScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	metav1.AddToGroupVersion(scheme, metav1.SchemeGroupVersion)
	var body bytes.Buffer
	list := &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "PartialObjectMetadataList"}, Items: items}
	if err := protobuf.NewSerializer(scheme, scheme).Encode(list, &body); err != nil {
		t.Fatal(err)
	}
	var served []byte
	var query string
	forbidden := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query = r.URL.Path + "?" + r.URL.RawQuery + " " + r.Header.Get("Accept")
		if forbidden {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,"message":"pods is forbidden"}`))
			return
		}
		w.Header().Set("Content-Type", "application/vnd.kubernetes.protobuf")
		w.Write(served)
	}))
	defer srv.Close()
	cfg := &rest.Config{Host: srv.URL}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	real := &kube.Clients{Kube: kc, Config: cfg}
	fakes := &kube.Clients{Metadata: metadatafake.NewSimpleMetadataClient(scheme, metas...)}

	served = body.Bytes()
	got, err := listPodMetadata(context.Background(), real, "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(query, "/api/v1/pods?") || !strings.Contains(query, "fieldSelector=") || strings.Contains(query, "limit=") ||
		!strings.Contains(query, "as=PartialObjectMetadataList") {
		t.Errorf("request %s: want one unpaged metadata LIST of all pods", query)
	}
	want, err := listPodMetadata(context.Background(), fakes, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in.Pods) || len(want) != len(in.Pods) {
		t.Fatalf("%d pods streamed, %d listed, %d in the fixture", len(got), len(want), len(in.Pods))
	}
	byName := map[string]corev1.Pod{}
	for _, p := range want {
		byName[p.Namespace+"/"+p.Name] = p
	}
	for _, p := range got {
		w := byName[p.Namespace+"/"+p.Name]
		if !reflect.DeepEqual(p, w) {
			t.Errorf("streamed %+v\nlisted   %+v", p.ObjectMeta, w.ObjectMeta)
		}
		if p.ManagedFields != nil || p.Annotations["prometheus.io/scrape"] != "" || p.Labels["version"] != "" {
			t.Errorf("%s keeps what no snapshot reads: %v %v %v", p.Name, p.ManagedFields, p.Labels, p.Annotations)
		}
	}
	if _, ok := got[0].Annotations[istio.AnnotationStatus]; !ok && in.Pods[0].Annotations[istio.AnnotationStatus] != "" {
		t.Errorf("the injection status was dropped: %v", got[0].Annotations)
	}
	if got[0].DeletionTimestamp == nil || len(got[0].OwnerReferences) == 0 || len(got[0].Labels) == 0 {
		t.Errorf("%s lost its deletion, owners or labels: %+v", got[0].Name, got[0].ObjectMeta)
	}

	for name, bad := range map[string][]byte{
		// The list says 5 bytes; the response ends after its first (empty) item.
		"cut after an item": []byte("k8s\x00\x12\x05\x12\x00"),
		"json":              []byte(`{"kind":"Status"}`),
		"truncated":         body.Bytes()[:body.Len()-7],
		"no list":           []byte("k8s\x00"),
	} {
		served = bad
		if _, err := listPodMetadata(context.Background(), real, ""); err == nil {
			t.Errorf("%s response: no error", name)
		}
	}
	forbidden = true // the apiserver's own errors stay what they are (status says which access is missing)
	if _, err := listPodMetadata(context.Background(), real, ""); !apierrors.IsForbidden(err) {
		t.Errorf("403: %v, want Forbidden", err)
	}
}

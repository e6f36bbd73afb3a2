package steptest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio/istiotest"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal/journaltest"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

var (
	deployments = appsv1.SchemeGroupVersion.WithResource("deployments")
	pods        = corev1.SchemeGroupVersion.WithResource("pods")
)

// Live makes the bed's fake cluster act as its controllers and istiods would, so a step's gates can
// pass and its success path runs through the runner: a Deployment whose pod template or replicas
// change is rolled (its pods replaced by pods the injector of their namespace's revision, or of their
// template's istio.io/rev, would make; its status complete), a deleted DaemonSet pod comes back on its
// node from the DaemonSet's template, and every istiod pod answers /debug/syncz through
// Clients.Forward, listing the running proxies its revision injected (and the ztunnels pointed at it)
// as SYNCED, and /metrics with no error counters. The controller writes to the store directly, so its writes
// are not among the step's (Writes, Sent). Call it before Run.
func (b *Bed) Live() {
	b.T.Helper()
	kc := b.Clients.Kube.(*fake.Clientset)
	tr := kc.Tracker()
	w, err := tr.Watch(deployments, "")
	if err != nil {
		b.T.Fatal(err)
	}
	// istiod writes its mesh root into the Istio namespace: what the plugin verifies istiod's serving
	// certificate against before it sends a token.
	root := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio-ca-root-cert", Namespace: "istio-system"},
		Data: map[string]string{"root-cert.pem": string(istiotest.RootPEM(b.T))}}
	if err := tr.Add(root); err != nil && !apierrors.IsAlreadyExists(err) {
		b.T.Fatal(err)
	}
	// As the controllers leave a cluster they have caught up with: every pod with an address, every
	// Deployment with its replicas, every Service with its endpoints.
	if o, err := tr.List(pods, corev1.SchemeGroupVersion.WithKind("Pod"), ""); err == nil {
		for i, p := range o.(*corev1.PodList).Items {
			if p.Status.PodIP == "" {
				p.Status.PodIP = fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)
				_ = tr.Update(pods, &p, p.Namespace)
			}
		}
	}
	seen := map[string]appsv1.Deployment{}
	rolls := 0
	if o, err := tr.List(deployments, appsv1.SchemeGroupVersion.WithKind("Deployment"), ""); err == nil {
		for _, d := range o.(*appsv1.DeploymentList).Items {
			seen[d.Namespace+"/"+d.Name] = d
			if len(podsOf(tr, &d)) == 0 && !selectsPods(tr, &d) && selectsOwnTemplate(&d) && ptr.Deref(d.Spec.Replicas, 1) > 0 {
				rolls++
				roll(tr, &d, rolls)
			}
		}
	}
	if o, err := tr.List(corev1.SchemeGroupVersion.WithResource("namespaces"), corev1.SchemeGroupVersion.WithKind("Namespace"), ""); err == nil {
		for _, n := range o.(*corev1.NamespaceList).Items {
			endpoints(tr, n.Name)
		}
	}
	pw, err := tr.Watch(pods, "")
	if err != nil {
		b.T.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var running sync.WaitGroup
	running.Add(2)
	// The DaemonSet controller: a deleted DaemonSet pod comes back on its node from the current template.
	go func() {
		defer running.Done()
		n := 0
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-pw.ResultChan():
				if !ok {
					return
				}
				if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Deleted {
					n++
					recreate(tr, p, n)
				}
			}
		}
	}()
	go func() {
		defer running.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.ResultChan():
				if !ok {
					return
				}
				d, ok := ev.Object.(*appsv1.Deployment)
				if !ok || ev.Type == watch.Deleted {
					continue
				}
				key := d.Namespace + "/" + d.Name
				last, known := seen[key]
				seen[key] = *d.DeepCopy()
				if known && reflect.DeepEqual(last.Spec.Template, d.Spec.Template) && ptr.Deref(last.Spec.Replicas, 1) == ptr.Deref(d.Spec.Replicas, 1) {
					continue
				}
				rolls++
				roll(tr, d, rolls)
			}
		}
	}()
	var mu sync.Mutex
	addrs := map[string]string{} // "ns/pod:port" → the double listening for it
	dump := istiotest.RecordedGatewayDump(b.T)
	b.Clients.Forward = func(_ context.Context, ns, pod string, port int) (string, func(), error) {
		mu.Lock()
		defer mu.Unlock()
		key := fmt.Sprintf("%s/%s:%d", ns, pod, port)
		if a, ok := addrs[key]; ok {
			return a, func() {}, nil
		}
		o, err := tr.Get(pods, ns, pod)
		if err != nil {
			return "", nil, fmt.Errorf("port-forward to %s: %w", key, err)
		}
		p := o.(*corev1.Pod)
		if p.Labels["app"] != "istiod" {
			return "", nil, fmt.Errorf("port-forward to %s: nothing listens there on this bed", key)
		}
		rev := istio.RevisionOf(p.Labels)
		if port == istio.DebugHTTPPort || port == mesh.IstiodMonitoringPort {
			s := httptest.NewServer(b.istiod(tr, rev))
			b.T.Cleanup(s.Close)
			addrs[key] = s.Listener.Addr().String()
			return addrs[key], func() {}, nil
		}
		addrs[key] = istiotest.XDS(b.T, func(id string) []byte {
			name, ns, _ := strings.Cut(id, ".")
			o, err := tr.Get(pods, ns, name)
			if err != nil {
				return nil
			}
			if r, ok := istio.InjectedRevision(o.(*corev1.Pod).Labels, o.(*corev1.Pod).Annotations); !ok || r != rev {
				return nil
			}
			return dump
		})
		return addrs[key], func() {}, nil
	}
	// The token istiod's debug endpoints take.
	kc.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "token" {
			return false, nil, nil
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authv1.TokenRequest).DeepCopy()
		tr.Status.Token = "bed-token"
		return true, tr, nil
	})
	b.T.Cleanup(func() {
		cancel()
		w.Stop()
		pw.Stop()
		running.Wait()
	})
}

// podsOf are a Deployment's pods: those of its ReplicaSets (a selector alone would also take a
// canary's pods, which carry the old gateway's labels).
func podsOf(tr k8stesting.ObjectTracker, d *appsv1.Deployment) []*corev1.Pod {
	o, err := tr.List(pods, corev1.SchemeGroupVersion.WithKind("Pod"), d.Namespace)
	if err != nil {
		return nil
	}
	var out []*corev1.Pod
	for i := range o.(*corev1.PodList).Items {
		p := &o.(*corev1.PodList).Items[i]
		for _, ref := range p.OwnerReferences {
			if ref.Kind == "ReplicaSet" && ref.Name == d.Name+"-"+p.Labels["pod-template-hash"] {
				out = append(out, p)
			}
		}
	}
	return out
}

// recreate makes a deleted DaemonSet pod again on its node, from the DaemonSet's template now.
func recreate(tr k8stesting.ObjectTracker, p *corev1.Pod, n int) {
	var ds string
	for _, ref := range p.OwnerReferences {
		if ref.Kind == "DaemonSet" {
			ds = ref.Name
		}
	}
	if ds == "" || p.Spec.NodeName == "" {
		return
	}
	o, err := tr.Get(appsv1.SchemeGroupVersion.WithResource("daemonsets"), p.Namespace, ds)
	if err != nil {
		return
	}
	d := o.(*appsv1.DaemonSet)
	np := &corev1.Pod{TypeMeta: meta("v1", "Pod"), ObjectMeta: metav1.ObjectMeta{
		Name: fmt.Sprintf("%s-%s-r%d", ds, p.Spec.NodeName, n), Namespace: p.Namespace,
		Labels: map[string]string{appsv1.DefaultDaemonSetUniqueLabelKey: fmt.Sprintf("r%d", n)}, Annotations: map[string]string{},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds, Controller: ptr.To(true)}},
	}, Spec: *d.Spec.Template.Spec.DeepCopy(),
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: fmt.Sprintf("10.200.%d.%d", n/250, n%250+1),
			Conditions: []corev1.PodCondition{{Type: corev1.ContainersReady, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
	for k, v := range d.Spec.Template.Labels {
		np.Labels[k] = v
	}
	for k, v := range d.Spec.Template.Annotations {
		np.Annotations[k] = v
	}
	np.Spec.NodeName = p.Spec.NodeName
	_ = tr.Add(np)
}

// selectsPods says whether d's selector picks any pod (fixtures' pods may have no owner).
func selectsPods(tr k8stesting.ObjectTracker, d *appsv1.Deployment) bool {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return false
	}
	o, err := tr.List(pods, corev1.SchemeGroupVersion.WithKind("Pod"), d.Namespace)
	if err != nil {
		return false
	}
	for _, p := range o.(*corev1.PodList).Items {
		if sel.Matches(labels.Set(p.Labels)) {
			return true
		}
	}
	return false
}

// selectsOwnTemplate says whether d is a Deployment the apiserver would take (fixtures' istiods are not).
func selectsOwnTemplate(d *appsv1.Deployment) bool {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	return err == nil && sel.Matches(labels.Set(d.Spec.Template.Labels))
}

// roll replaces d's pods by its template's, injected as the cluster's webhooks would, and marks its
// rollout complete (generation n names the new ReplicaSet).
func roll(tr k8stesting.ObjectTracker, d *appsv1.Deployment, n int) {
	for _, p := range podsOf(tr, d) {
		_ = tr.Delete(pods, p.Namespace, p.Name)
	}
	rev := injectingRevision(tr, d)
	hash := fmt.Sprintf("r%d", n)
	want := ptr.Deref(d.Spec.Replicas, 1)
	// Nothing sets a readiness gate's condition on the bed: such pods run but are never Ready.
	ready := corev1.ConditionTrue
	if len(d.Spec.Template.Spec.ReadinessGates) > 0 {
		ready = corev1.ConditionFalse
	}
	for i := range want {
		p := &corev1.Pod{TypeMeta: meta("v1", "Pod"), ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-%s-%d", d.Name, hash, i), Namespace: d.Namespace,
			Labels: map[string]string{"pod-template-hash": hash}, Annotations: map[string]string{},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: d.Name + "-" + hash, Controller: ptr.To(true)}},
		}, Spec: *d.Spec.Template.Spec.DeepCopy(),
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: fmt.Sprintf("10.%d.%d.%d", 1+n/250, n%250, i+1),
				Conditions: []corev1.PodCondition{{Type: corev1.ContainersReady, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: ready}}}}
		for k, v := range d.Spec.Template.Labels {
			p.Labels[k] = v
		}
		for k, v := range d.Spec.Template.Annotations {
			p.Annotations[k] = v
		}
		if rev != "" {
			p.Labels[istio.LabelRev] = rev
			p.Annotations[istio.AnnotationStatus] = `{"containers":["istio-proxy"],"revision":"` + rev + `"}`
			if !hasProxy(p.Spec.Containers) {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: istio.ProxyContainer, Image: "docker.io/istio/proxyv2:" + Versions[rev]})
			}
		}
		_ = tr.Add(p)
	}
	o, err := tr.Get(deployments, d.Namespace, d.Name)
	if err != nil {
		return
	}
	cur := o.(*appsv1.Deployment).DeepCopy()
	avail := want
	if ready != corev1.ConditionTrue {
		avail = 0
	}
	cur.Status = appsv1.DeploymentStatus{ObservedGeneration: cur.Generation, Replicas: want, UpdatedReplicas: want, ReadyReplicas: avail, AvailableReplicas: avail}
	_ = tr.Update(deployments, cur, cur.Namespace)
	endpoints(tr, d.Namespace)
}

var endpointSlices = discoveryv1.SchemeGroupVersion.WithResource("endpointslices")

// endpoints writes one EndpointSlice per Service of namespace ns: its pods, ready as they are.
func endpoints(tr k8stesting.ObjectTracker, ns string) {
	o, err := tr.List(corev1.SchemeGroupVersion.WithResource("services"), corev1.SchemeGroupVersion.WithKind("Service"), ns)
	if err != nil {
		return
	}
	pl, err := tr.List(pods, corev1.SchemeGroupVersion.WithKind("Pod"), ns)
	if err != nil {
		return
	}
	for _, svc := range o.(*corev1.ServiceList).Items {
		if len(svc.Spec.Selector) == 0 {
			continue
		}
		es := &discoveryv1.EndpointSlice{TypeMeta: meta("discovery.k8s.io/v1", "EndpointSlice"),
			ObjectMeta:  metav1.ObjectMeta{Name: svc.Name + "-live", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name}},
			AddressType: discoveryv1.AddressTypeIPv4}
		for _, p := range pl.(*corev1.PodList).Items {
			if p.Status.PodIP == "" || p.DeletionTimestamp != nil || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(p.Labels)) {
				continue
			}
			ready := false
			for _, c := range p.Status.Conditions {
				ready = ready || c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
			}
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{p.Status.PodIP}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: p.Name}})
		}
		if err := tr.Update(endpointSlices, es, ns); err != nil {
			_ = tr.Add(es)
		}
	}
}

func hasProxy(cs []corev1.Container) bool {
	for _, c := range cs {
		if c.Name == istio.ProxyContainer {
			return true
		}
	}
	return false
}

// injectingRevision is the revision whose injector takes d's new pods: the namespace's istio.io/rev
// (istio-injection=enabled: the default tag), else the template's istio.io/rev; tags resolved through
// their webhooks. "" when none injects.
func injectingRevision(tr k8stesting.ObjectTracker, d *appsv1.Deployment) string {
	var rev string
	if o, err := tr.Get(corev1.SchemeGroupVersion.WithResource("namespaces"), "", d.Namespace); err == nil {
		l := o.(*corev1.Namespace).Labels
		rev = l[istio.LabelRev]
		if l[istio.LabelInjection] == "enabled" {
			rev = istio.DefaultRevision
		}
		if l[istio.LabelInjection] == "disabled" {
			return ""
		}
	}
	if rev == "" {
		rev = d.Spec.Template.Labels[istio.LabelRev]
	}
	if d.Spec.Template.Labels[istio.LabelSidecarInject] == "false" || rev == "" {
		return ""
	}
	return journaltest.ResolveTag(tr, rev)
}

// istiod answers as one istiod pod of revision rev: /debug/syncz lists every running proxy its
// revision injected, SYNCED; /metrics has none of the error counters.
func (b *Bed) istiod(tr k8stesting.ObjectTracker, rev string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/syncz", func(w http.ResponseWriter, req *http.Request) {
		only := req.URL.Query().Get("namespace") // as istiod filters
		b.synczMu.Lock()
		b.syncz = append(b.syncz, only)
		b.synczMu.Unlock()
		o, err := tr.List(pods, corev1.SchemeGroupVersion.WithKind("Pod"), "")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		type res struct {
			Sent  string `json:"sent"`
			Acked string `json:"acked"`
		}
		type entry struct {
			Proxy     string         `json:"proxy"`
			Type      string         `json:"proxy_type"`
			Version   string         `json:"istio_version"`
			ClusterID string         `json:"cluster_id"`
			Resources map[string]res `json:"resources"`
		}
		out := []entry{}
		for _, p := range o.(*corev1.PodList).Items {
			r, injected := istio.InjectedRevision(p.Labels, p.Annotations)
			typ := "sidecar"
			if p.Labels["app"] == mesh.ComponentZtunnel { // a node agent pointed at an istiod, not injected
				_, r = mesh.PodTarget(&p, mesh.ComponentZtunnel)
				injected, typ = true, "ztunnel"
			}
			if !injected || r != rev || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil || (only != "" && p.Namespace != only) {
				continue
			}
			if strings.Contains(p.Annotations[istio.AnnotationTemplates], "gateway") || p.Labels[istio.LabelIstio] != "" {
				typ = "router"
			}
			out = append(out, entry{Proxy: p.Name + "." + p.Namespace, Type: typ, Version: Versions[rev], ClusterID: "Kubernetes",
				Resources: map[string]res{"type.googleapis.com/envoy.config.listener.v3.Listener": {Sent: "n1", Acked: "n1"}}})
		}
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "# istiod of", rev, "on the bed: no errors")
	})
	return mux
}

// PodRevisions are the revisions that injected the running pods of namespace ns, sorted ("" for none).
func (b *Bed) PodRevisions(ns string) []string {
	b.T.Helper()
	l, err := b.Clients.Kube.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		b.T.Fatal(err)
	}
	var out []string
	for _, p := range l.Items {
		rev, _ := istio.InjectedRevision(p.Labels, p.Annotations)
		out = append(out, rev)
	}
	sort.Strings(out)
	return out
}

// Eventually polls check (the reason it is not yet true, "" when it is) until it holds or timeout.
func Eventually(t *testing.T, timeout time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		why := check()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not after %s: %s", timeout, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package mesh

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/encoding/protowire"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// XDSOptions say how to reach istiod's xDS debug endpoint.
type XDSOptions struct {
	// Address, when set, is asked instead of port-forwarding to every istiod pod.
	Address   string
	Plaintext bool
	// Insecure skips verifying the certificate of the istiod at Address (--insecure-xds).
	Insecure bool
	// Port is the istiod pod port to port-forward to (15012).
	Port    int
	Timeout time.Duration
}

// ReadOptions choose what a snapshot reads.
type ReadOptions struct {
	IstioNamespace string
	Namespace      string // "" = all namespaces
	Proxies        bool   // ask every istiod for syncz
	XDS            XDSOptions
	// Istiod, when set, is the client syncz is asked through (its token and port-forwards are reused);
	// otherwise a read opens one of its own and closes it.
	Istiod *Istiod
	// PodMetadata lists pods as metadata only wherever a snapshot reads no more of them (owners,
	// labels, the injection annotation), and whole only where it does: the Istio namespace (node
	// agents), namespaces with a gateway Deployment (proxy images) and ambient pods' namespaces. The
	// snapshot is the same; Inputs.Pods are not whole pods, so only a read that keeps nothing but the
	// snapshot (status) asks for it.
	PodMetadata bool
}

// Read takes a Snapshot of the cluster: a handful of parallel LIST calls, plus syncz from every istiod
// of every revision when opts.Proxies is set.
func Read(ctx context.Context, c *kube.Clients, opts ReadOptions) (*Snapshot, error) {
	in, err := List(ctx, c, opts)
	if err != nil {
		return nil, err
	}
	s := Build(*in)
	s.ReadAt = time.Now().UTC().Truncate(time.Second)
	return s, nil
}

// List gathers the Inputs of a snapshot.
func List(ctx context.Context, c *kube.Clients, opts ReadOptions) (*Inputs, error) {
	in := &Inputs{IstioNamespace: opts.IstioNamespace, Namespace: opts.Namespace}
	k := c.Kube
	scope := opts.Namespace // "" lists all namespaces
	istiod := metav1.ListOptions{LabelSelector: istio.LabelApp + "=" + istio.IstiodApp}
	// The istiod pods come first, alone: started together, every request opened its own TLS connection
	// to the apiserver (13 handshakes, client certificates signed each time) before HTTP/2 could share one.
	istiodPods, err := k.CoreV1().Pods(opts.IstioNamespace).List(ctx, istiod)
	if err != nil {
		return nil, wrap("list istiod pods", err)
	}
	in.IstiodPods = istiodPods.Items
	g, gctx := errgroup.WithContext(ctx)
	var whole *wholePods // nil: pods are listed whole everywhere
	if opts.PodMetadata && c.Metadata != nil {
		whole = &wholePods{c: c, scope: scope, pods: map[string][]corev1.Pod{}}
		whole.start(gctx, g, opts.IstioNamespace)
	}
	if opts.Proxies {
		// syncz needs only the istiod pods: it runs while the big LISTs are still coming in.
		g.Go(func() error {
			client := opts.Istiod
			if client == nil {
				client = NewIstiod(c, opts)
				defer client.Close()
			}
			in.Syncz = client.Syncz(gctx, in.IstiodPods)
			return nil
		})
	}
	g.Go(func() error {
		l, err := k.AppsV1().Deployments(opts.IstioNamespace).List(gctx, istiod)
		if err == nil {
			in.IstiodDeployments = l.Items
		}
		return wrap("list istiod deployments", err)
	})
	g.Go(func() error {
		l, err := k.CoreV1().ConfigMaps(opts.IstioNamespace).List(gctx, metav1.ListOptions{LabelSelector: istio.LabelRev})
		if err == nil {
			in.ConfigMaps = l.Items
		}
		return wrap("list istio configmaps", err)
	})
	g.Go(func() error {
		l, err := k.AdmissionregistrationV1().MutatingWebhookConfigurations().List(gctx, metav1.ListOptions{})
		if err == nil {
			in.MutatingWebhooks = l.Items
		}
		return wrap("list mutating webhooks", err)
	})
	g.Go(func() error {
		l, err := k.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(gctx, metav1.ListOptions{})
		if err == nil {
			in.ValidatingWebhooks = l.Items
		}
		return wrap("list validating webhooks", err)
	})
	g.Go(func() error {
		if scope != "" {
			ns, err := k.CoreV1().Namespaces().Get(gctx, scope, metav1.GetOptions{})
			if err == nil {
				in.Namespaces = []corev1.Namespace{*ns}
				whole.start(gctx, g, ambientNamespaces(in.Namespaces)...)
			}
			return wrap("get namespace "+scope, err)
		}
		l, err := k.CoreV1().Namespaces().List(gctx, metav1.ListOptions{})
		if err == nil {
			in.Namespaces = l.Items
			whole.start(gctx, g, ambientNamespaces(in.Namespaces)...)
		}
		return wrap("list namespaces", err)
	})
	g.Go(func() error {
		l, err := k.AppsV1().Deployments(scope).List(gctx, metav1.ListOptions{})
		if err == nil {
			in.Deployments = l.Items
			whole.start(gctx, g, gatewayNamespaces(in.Deployments)...)
		}
		return wrap("list deployments", err)
	})
	g.Go(func() error {
		l, err := k.AppsV1().StatefulSets(scope).List(gctx, metav1.ListOptions{})
		if err == nil {
			in.StatefulSets = l.Items
		}
		return wrap("list statefulsets", err)
	})
	g.Go(func() error {
		l, err := k.AppsV1().DaemonSets(scope).List(gctx, metav1.ListOptions{})
		if err == nil {
			in.DaemonSets = l.Items
		}
		return wrap("list daemonsets", err)
	})
	g.Go(func() error {
		var pods []corev1.Pod
		var err error
		if whole != nil {
			pods, err = listPodMetadata(gctx, c, scope)
		} else {
			pods, err = listPods(gctx, c, scope)
		}
		in.Pods = pods
		return wrap("list pods", err)
	})
	g.Go(func() error {
		l, err := k.CoreV1().Services(scope).List(gctx, metav1.ListOptions{})
		if err == nil {
			in.Services = l.Items
		}
		return wrap("list services", err)
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if whole != nil {
		// Pods enrolled in ambient one by one are known only now.
		g, gctx := errgroup.WithContext(ctx)
		whole.start(gctx, g, ambientPodNamespaces(in.Pods)...)
		if err := g.Wait(); err != nil {
			return nil, err
		}
		in.Pods = whole.replace(in.Pods)
	}
	return in, nil
}

// listPodMetadata lists pods as metadata only, without the Succeeded and Failed ones no snapshot counts,
// and keeps of each what a snapshot reads (metadataPod).
func listPodMetadata(ctx context.Context, c *kube.Clients, namespace string) ([]corev1.Pod, error) {
	var pods podPages
	if c.Config != nil { // a real apiserver (fake clientsets cannot answer a raw request)
		err := streamPodMetadata(ctx, c, namespace, &pods)
		return pods.join(), err
	}
	list := c.Metadata.Resource(corev1.SchemeGroupVersion.WithResource("pods")).Namespace(namespace)
	err := eachPage(metav1.ListOptions{FieldSelector: notFinished}, func() { pods = podPages{} }, func(opts metav1.ListOptions) (string, error) {
		l, err := list.List(ctx, opts)
		if err != nil {
			return "", err
		}
		for i := range l.Items {
			pods.add(l.Items[i].ObjectMeta)
		}
		return l.Continue, nil
	})
	return pods.join(), err
}

// podPages collects metadata pods' metadata in fixed pages, made pods once at the end: at 5,000 pods a
// slice of whole corev1.Pod values (1.2 KB each) growing by doubling was the largest part of the heap,
// and pages of pods copied into one slice most of the CPU after the LIST.
type podPages struct {
	pages [][]metav1.ObjectMeta
	n     int
}

func (p *podPages) add(m metav1.ObjectMeta) {
	if len(p.pages) == 0 || len(p.pages[len(p.pages)-1]) == podPage {
		p.pages = append(p.pages, make([]metav1.ObjectMeta, 0, podPage))
	}
	last := &p.pages[len(p.pages)-1]
	*last = append(*last, metadataPod(m))
	p.n++
}

func (p *podPages) join() []corev1.Pod {
	out := make([]corev1.Pod, 0, p.n)
	for _, page := range p.pages {
		for _, m := range page {
			out = append(out, corev1.Pod{ObjectMeta: m})
		}
	}
	return out
}

// streamPodMetadata lists pods as metadata in one unpaged LIST, which the apiserver serves from its
// watch cache, and decodes the protobuf response item by item as it arrives, so neither the response nor
// any pod's managed fields are held. The pages of a paged LIST after the first are read from etcd: at
// 5,000 pods on the test bed they took 0.5-0.9 s against 0.2 s for one LIST. Decoding that LIST whole
// held all of it at once (165 MB peak against 112 MB); a streaming list (a watch sending initial events)
// was light but took 0.4 s.
func streamPodMetadata(ctx context.Context, c *kube.Clients, namespace string, pods *podPages) error {
	body, err := c.Kube.CoreV1().RESTClient().Get().Namespace(namespace).Resource("pods").
		Param("fieldSelector", notFinished).SetHeader("Accept", metadataListProtobuf).Stream(ctx)
	if err != nil {
		return err
	}
	defer body.Close()
	var m metav1.ObjectMeta
	var read []byte
	err = eachListItem(bufio.NewReaderSize(body, 64<<10), func(b []byte) error {
		var err error
		if read, err = metadataRead(b, read[:0]); err != nil {
			return err
		}
		m.Reset()
		if err := m.Unmarshal(read); err != nil {
			return err
		}
		pods.add(m)
		return nil
	})
	if err != nil {
		return fmt.Errorf("list pods: decoding: %w", err)
	}
	return nil
}

// metadataRead appends to out the encoding of the ObjectMeta of item (a PartialObjectMetadata) with
// only the fields metadataPod keeps, and of the labels and annotations only the read ones: decoding the
// managed fields and every label was most of the CPU status spent on 5,000 pods.
func metadataRead(item, out []byte) ([]byte, error) {
	var meta []byte
	err := eachWireField(item, func(num protowire.Number, field, value []byte) error {
		if num == 1 { // PartialObjectMetadata.metadata
			meta = value
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = eachWireField(meta, func(num protowire.Number, field, value []byte) error {
		switch num {
		case 1, 3, 9, 13: // name, namespace, deletionTimestamp, ownerReferences
			out = append(out, field...)
		case 11, 12: // a label or an annotation: a map entry whose field 1 is the key
			keys := podLabelsRead
			if num == 12 {
				keys = podAnnotationsRead
			}
			var key []byte
			if err := eachWireField(value, func(n protowire.Number, _, v []byte) error {
				if n == 1 {
					key = v
				}
				return nil
			}); err != nil {
				return err
			}
			for _, k := range keys {
				if string(key) == k { // compared without a copy
					out = append(out, field...)
					break
				}
			}
		}
		return nil
	})
	return out, err
}

// eachWireField calls f with each length-delimited field of the protobuf message b: its number, its
// whole encoding and its value. Other fields are skipped.
func eachWireField(b []byte, f func(num protowire.Number, field, value []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return protowire.ParseError(m)
		}
		if typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[n : n+m])
			if err := f(num, b[:n+m], v); err != nil {
				return err
			}
		}
		b = b[n+m:]
	}
	return nil
}

const metadataListProtobuf = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"

// eachListItem calls f with the encoding of each item of a protobuf list response, read from r: the
// apiserver's envelope ("k8s\x00", then a runtime.Unknown whose field 2 is the list), and the list's
// field 2 its items. The bytes passed to f are reused after it returns.
func eachListItem(r *bufio.Reader, f func([]byte) error) error {
	magic := make([]byte, 4)
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != "k8s\x00" {
		return fmt.Errorf("not a protobuf response (%q, %v)", magic, err)
	}
	var buf []byte
	found := false
	err := eachField(r, func(num protowire.Number, v io.Reader, n int) error {
		if num != 2 { // runtime.Unknown.raw
			return skip(v, n)
		}
		found = true
		return eachField(bufio.NewReader(v), func(num protowire.Number, v io.Reader, n int) error {
			if num != 2 { // the list's items
				return skip(v, n)
			}
			if cap(buf) < n {
				buf = make([]byte, n)
			}
			if _, err := io.ReadFull(v, buf[:n]); err != nil {
				return err
			}
			return f(buf[:n])
		})
	})
	if err == nil && !found {
		err = errors.New("no list in the response")
	}
	return err
}

// eachField reads a protobuf message from r to its end, calling f with each length-delimited field (its
// number, a reader of its n bytes, which f must consume); other fields are skipped.
func eachField(r *bufio.Reader, f func(num protowire.Number, v io.Reader, n int) error) error {
	for {
		tag, err := binary.ReadUvarint(r)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		num, typ := protowire.DecodeTag(tag)
		switch typ {
		case protowire.BytesType:
			n, err := binary.ReadUvarint(r)
			if err != nil {
				return err
			}
			if n > math.MaxInt32 {
				return fmt.Errorf("field %d: length %d", num, n)
			}
			v := &io.LimitedReader{R: r, N: int64(n)}
			if err := f(num, v, int(n)); err != nil {
				return err
			}
			if v.N != 0 { // the response ended inside this field
				return fmt.Errorf("field %d: %d of its %d bytes missing", num, v.N, n)
			}
		case protowire.VarintType:
			_, err = binary.ReadUvarint(r)
		case protowire.Fixed32Type:
			_, err = r.Discard(4)
		case protowire.Fixed64Type:
			_, err = r.Discard(8)
		default:
			err = fmt.Errorf("field %d: wire type %d", num, typ)
		}
		if err != nil {
			return err
		}
	}
}

func skip(r io.Reader, n int) error {
	_, err := io.CopyN(io.Discard, r, int64(n))
	return err
}

// metadataPod is the part of a pod's metadata a snapshot reads: name, namespace,
// owners, deletion, and the labels and annotations below. At 5,000 pods the rest of the labels and
// annotations were most of the heap; TestReadPodMetadataSameSnapshot fails if a read one is missing.
func metadataPod(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, OwnerReferences: m.OwnerReferences,
		DeletionTimestamp: m.DeletionTimestamp, Labels: keep(m.Labels, podLabelsRead), Annotations: keep(m.Annotations, podAnnotationsRead)}
}

var (
	// The Deployment a pod belongs to (podOwnerOf), ambient enrolment (IsAmbientPod) and the
	// injected revision (istio.InjectedRevision).
	podLabelsRead = []string{"pod-template-hash", istio.LabelDataplaneMode, istio.LabelManagedGateway, istio.LabelRev}
	// Which revision injected the pod (istio.InjectedRevision, IsAmbientPod).
	podAnnotationsRead = []string{istio.AnnotationStatus, istio.LabelRev}
)

func keep(a map[string]string, keys []string) map[string]string {
	n := 0
	for _, k := range keys {
		if _, ok := a[k]; ok {
			n++
		}
	}
	switch n {
	case 0:
		return nil
	case len(a): // only read ones already (metadataRead decodes no others): not copied
		return a
	}
	var out map[string]string
	for _, k := range keys {
		if v, ok := a[k]; ok {
			if out == nil {
				out = make(map[string]string, 2)
			}
			out[k] = v
		}
	}
	return out
}

const notFinished = "status.phase!=" + string(corev1.PodSucceeded) + ",status.phase!=" + string(corev1.PodFailed)

// wholePods lists whole the pods of the namespaces whose pods a snapshot reads more of than their
// metadata: the Istio namespace (ambient's node agents), those of gateway Deployments (the proxy image's
// version), ambient namespaces and those of pods enrolled in ambient one by one (node, phase, host
// network). Each namespace is listed once, as soon as what names it has been read, beside the big
// metadata LIST rather than after it.
type wholePods struct {
	c     *kube.Clients
	scope string
	mu    sync.Mutex
	pods  map[string][]corev1.Pod // by namespace; present once started
}

// start lists the namespaces not yet started (and in scope) in g. A nil wholePods lists nothing.
func (w *wholePods) start(ctx context.Context, g *errgroup.Group, namespaces ...string) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ns := range namespaces {
		if _, started := w.pods[ns]; started || (w.scope != "" && ns != w.scope) {
			continue
		}
		w.pods[ns] = nil
		g.Go(func() error {
			pods, err := listPods(ctx, w.c, ns)
			w.mu.Lock()
			w.pods[ns] = pods
			w.mu.Unlock()
			return wrap("list pods in "+ns, err)
		})
	}
}

// replace returns pods with the metadata-only pods of the listed namespaces replaced by whole ones.
func (w *wholePods) replace(pods []corev1.Pod) []corev1.Pod {
	kept := pods[:0]
	for i := range pods {
		if _, whole := w.pods[pods[i].Namespace]; whole {
			continue
		}
		if len(kept) < i { // pods are 1.2 KB: copied only once one has been dropped
			pods[len(kept)] = pods[i]
		}
		kept = kept[:len(kept)+1]
	}
	namespaces := make([]string, 0, len(w.pods))
	for ns := range w.pods {
		namespaces = append(namespaces, ns)
	}
	sort.Strings(namespaces)
	for _, ns := range namespaces {
		kept = append(kept, w.pods[ns]...)
	}
	return kept
}

func gatewayNamespaces(deployments []appsv1.Deployment) []string {
	var out []string
	for _, d := range deployments {
		if istio.IsGatewayTemplate(d.Spec.Template.Labels, d.Spec.Template.Annotations) {
			out = append(out, d.Namespace)
		}
	}
	return out
}

func ambientNamespaces(namespaces []corev1.Namespace) []string {
	var out []string
	for _, n := range namespaces {
		if n.Labels[istio.LabelDataplaneMode] != "" {
			out = append(out, n.Name)
		}
	}
	return out
}

func ambientPodNamespaces(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		if p.Labels[istio.LabelDataplaneMode] != "" {
			out = append(out, p.Namespace)
		}
	}
	return out
}

// podPage is the LIST chunk size for pods, as kubectl's.
const podPage = 500

// listPods lists pods in pages and keeps of each only what a snapshot reads, so a mesh of thousands
// of pods is never held whole in memory (the pod LIST was most of status's time and memory).
func listPods(ctx context.Context, c *kube.Clients, namespace string) ([]corev1.Pod, error) {
	var out []corev1.Pod
	err := eachPage(metav1.ListOptions{}, func() { out = nil }, func(opts metav1.ListOptions) (string, error) {
		l, err := c.Kube.CoreV1().Pods(namespace).List(ctx, opts)
		if err != nil {
			return "", err
		}
		for i := range l.Items {
			out = append(out, slimPod(&l.Items[i]))
		}
		return l.Continue, nil
	})
	return out, err
}

// eachPage runs one LIST in pages of podPage, list returning each page's continue token. A token that
// outlived etcd's compaction starts the LIST over, unpaged, after reset.
func eachPage(opts metav1.ListOptions, reset func(), list func(metav1.ListOptions) (string, error)) error {
	opts.Limit = podPage
	for {
		next, err := list(opts)
		if apierrors.IsResourceExpired(err) && opts.Continue != "" {
			reset()
			opts.Limit, opts.Continue = 0, ""
			continue
		}
		if err != nil || next == "" {
			return err
		}
		opts.Continue = next
	}
}

// slimPod drops the parts of a pod no snapshot, check or gate reads: managed fields, volumes, and
// per container its command, environment (but a ztunnel's XDS_ADDRESS), mounts and probes.
func slimPod(p *corev1.Pod) corev1.Pod {
	q := *p
	q.ManagedFields = nil
	q.Spec.Volumes = nil
	q.Spec.Containers = slimContainers(p.Spec.Containers)
	q.Spec.InitContainers = slimContainers(p.Spec.InitContainers)
	q.Status.ContainerStatuses, q.Status.InitContainerStatuses = nil, nil
	return q
}

func slimContainers(cs []corev1.Container) []corev1.Container {
	out := make([]corev1.Container, len(cs))
	for i, c := range cs {
		out[i] = corev1.Container{Name: c.Name, Image: c.Image, Ports: c.Ports, Resources: c.Resources, RestartPolicy: c.RestartPolicy}
		for _, e := range c.Env {
			if e.Name == istio.EnvXDSAddress { // the istiod a ztunnel is pointed at
				out[i].Env = []corev1.EnvVar{e}
			}
		}
	}
	return out
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

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
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/encoding/protowire"
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
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		l, err := k.AppsV1().Deployments(opts.IstioNamespace).List(gctx, istiod)
		if err == nil {
			in.IstiodDeployments = l.Items
		}
		return wrap("list istiod deployments", err)
	})
	g.Go(func() error {
		l, err := k.CoreV1().Pods(opts.IstioNamespace).List(gctx, istiod)
		if err != nil {
			return wrap("list istiod pods", err)
		}
		in.IstiodPods = l.Items
		// syncz needs only the istiod pods: it runs while the big LISTs are still coming in.
		if opts.Proxies {
			client := opts.Istiod
			if client == nil {
				client = NewIstiod(c, opts)
				defer client.Close()
			}
			in.Syncz = client.Syncz(gctx, l.Items)
		}
		return nil
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
			}
			return wrap("get namespace "+scope, err)
		}
		l, err := k.CoreV1().Namespaces().List(gctx, metav1.ListOptions{})
		if err == nil {
			in.Namespaces = l.Items
		}
		return wrap("list namespaces", err)
	})
	g.Go(func() error {
		l, err := k.AppsV1().Deployments(scope).List(gctx, metav1.ListOptions{})
		if err == nil {
			in.Deployments = l.Items
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
	metaPods := opts.PodMetadata && c.Metadata != nil
	g.Go(func() error {
		var pods []corev1.Pod
		var err error
		if metaPods {
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
	if metaPods {
		if err := wholePods(ctx, c, in); err != nil {
			return nil, err
		}
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

// podPages collects metadata pods in fixed pages joined once at the end: at 5,000 pods a slice of whole
// corev1.Pod values growing by doubling was the largest part of the heap.
type podPages struct {
	pages [][]corev1.Pod
	n     int
}

func (p *podPages) add(m metav1.ObjectMeta) {
	if len(p.pages) == 0 || len(p.pages[len(p.pages)-1]) == podPage {
		p.pages = append(p.pages, make([]corev1.Pod, 0, podPage))
	}
	last := &p.pages[len(p.pages)-1]
	*last = append(*last, metadataPod(m))
	p.n++
}

func (p *podPages) join() []corev1.Pod {
	if len(p.pages) == 1 {
		return p.pages[0]
	}
	out := make([]corev1.Pod, 0, p.n)
	for _, page := range p.pages {
		out = append(out, page...)
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
	var m metav1.PartialObjectMetadata
	err = eachListItem(bufio.NewReaderSize(body, 64<<10), func(b []byte) error {
		m.Reset()
		if err := m.Unmarshal(b); err != nil {
			return err
		}
		pods.add(m.ObjectMeta)
		return nil
	})
	if err != nil {
		return fmt.Errorf("list pods: decoding: %w", err)
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

// metadataPod is a pod of which only what a snapshot reads of its metadata is kept: name, namespace,
// owners, deletion, and the labels and annotations below. At 5,000 pods the rest of the labels and
// annotations were most of the heap; TestReadPodMetadataSameSnapshot fails if a read one is missing.
func metadataPod(m metav1.ObjectMeta) corev1.Pod {
	return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, OwnerReferences: m.OwnerReferences,
		DeletionTimestamp: m.DeletionTimestamp, Labels: keep(m.Labels, podLabelsRead), Annotations: keep(m.Annotations, podAnnotationsRead)}}
}

var (
	// The Deployment a pod belongs to (podOwnerOf), ambient enrolment (IsAmbientPod) and the
	// injected revision (istio.InjectedRevision).
	podLabelsRead = []string{"pod-template-hash", istio.LabelDataplaneMode, istio.LabelManagedGateway, istio.LabelRev}
	// Which revision injected the pod (istio.InjectedRevision, IsAmbientPod).
	podAnnotationsRead = []string{istio.AnnotationStatus, istio.LabelRev}
)

func keep(a map[string]string, keys []string) map[string]string {
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

// WholePodNamespaces are the namespaces whose pods a snapshot reads more of than their metadata: the
// Istio namespace (ambient's node agents), those of gateway Deployments (the proxy image's version),
// ambient namespaces and those of pods enrolled in ambient one by one (node, phase, host network).
func WholePodNamespaces(in *Inputs) []string {
	set := map[string]bool{in.IstioNamespace: true}
	for _, d := range in.Deployments {
		if istio.IsGatewayTemplate(d.Spec.Template.Labels, d.Spec.Template.Annotations) {
			set[d.Namespace] = true
		}
	}
	for _, n := range in.Namespaces {
		if n.Labels[istio.LabelDataplaneMode] != "" {
			set[n.Name] = true
		}
	}
	for _, p := range in.Pods {
		if p.Labels[istio.LabelDataplaneMode] != "" {
			set[p.Namespace] = true
		}
	}
	var out []string
	for ns := range set {
		if in.Namespace == "" || ns == in.Namespace {
			out = append(out, ns)
		}
	}
	sort.Strings(out)
	return out
}

// wholePods replaces the metadata-only pods of WholePodNamespaces with whole ones, listed in parallel.
func wholePods(ctx context.Context, c *kube.Clients, in *Inputs) error {
	namespaces := WholePodNamespaces(in)
	whole := make([][]corev1.Pod, len(namespaces))
	g, gctx := errgroup.WithContext(ctx)
	for i, ns := range namespaces {
		g.Go(func() error {
			pods, err := listPods(gctx, c, ns)
			whole[i] = pods
			return wrap("list pods in "+ns, err)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	replaced := map[string]bool{}
	for _, ns := range namespaces {
		replaced[ns] = true
	}
	kept := in.Pods[:0]
	for _, p := range in.Pods {
		if !replaced[p.Namespace] {
			kept = append(kept, p)
		}
	}
	for _, pods := range whole {
		kept = append(kept, pods...)
	}
	in.Pods = kept
	return nil
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

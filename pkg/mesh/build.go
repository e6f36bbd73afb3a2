package mesh

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	admregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
)

// Inputs are the objects a Snapshot is built from: the result of a few LIST calls and of syncz.
type Inputs struct {
	IstioNamespace     string
	Namespace          string // "" = all namespaces
	IstiodDeployments  []appsv1.Deployment
	IstiodPods         []corev1.Pod
	MutatingWebhooks   []admregv1.MutatingWebhookConfiguration
	ValidatingWebhooks []admregv1.ValidatingWebhookConfiguration
	ConfigMaps         []corev1.ConfigMap
	Namespaces         []corev1.Namespace
	Deployments        []appsv1.Deployment
	StatefulSets       []appsv1.StatefulSet
	DaemonSets         []appsv1.DaemonSet
	Pods               []corev1.Pod
	Services           []corev1.Service
	// Syncz holds one answer per istiod asked; nil when proxies were not read.
	Syncz []IstiodSyncz
}

// EachWorkload calls f with the kind, metadata and pod template of every Deployment, StatefulSet and
// DaemonSet read.
func (in *Inputs) EachWorkload(f func(kind string, m metav1.Object, t *corev1.PodTemplateSpec)) {
	for i := range in.Deployments {
		f("Deployment", &in.Deployments[i], &in.Deployments[i].Spec.Template)
	}
	for i := range in.StatefulSets {
		f("StatefulSet", &in.StatefulSets[i], &in.StatefulSets[i].Spec.Template)
	}
	for i := range in.DaemonSets {
		f("DaemonSet", &in.DaemonSets[i], &in.DaemonSets[i].Spec.Template)
	}
}

// IstiodSyncz is one istiod's syncz answer (or why there is none).
type IstiodSyncz struct {
	Pod      string
	Revision string
	Version  string
	Proxies  []istio.ProxySync
	Err      error
}

// Resolver resolves injection labels to revisions through tags.
type Resolver struct {
	revisions map[string]bool
	tags      map[string]string
}

// Resolve returns the revision a label value names, and the tag it went through, if any.
func (r Resolver) Resolve(name string) (rev, via string, ok bool) {
	if r.revisions[name] {
		return name, "", true
	}
	if t, found := r.tags[name]; found {
		return t, name, true
	}
	return "", "", false
}

// Default returns the revision istio-injection=enabled selects: the default tag's, else the
// revision named "default".
func (r Resolver) Default() (rev, via string, ok bool) {
	if t, found := r.tags[istio.DefaultRevision]; found {
		return t, istio.DefaultRevision, true
	}
	if r.revisions[istio.DefaultRevision] {
		return istio.DefaultRevision, "", true
	}
	return "", "", false
}

// Resolver returns the resolver of this snapshot's revisions and tags.
func (s *Snapshot) Resolver() Resolver {
	r := Resolver{revisions: map[string]bool{}, tags: map[string]string{}}
	for _, rv := range s.Revisions {
		r.revisions[rv.Name] = true
	}
	for _, t := range s.Tags {
		r.tags[t.Name] = t.Revision
	}
	return r
}

// Build assembles a Snapshot from listed objects. It does no I/O.
func Build(in Inputs) *Snapshot {
	s := &Snapshot{IstioNamespace: in.IstioNamespace, Namespace: in.Namespace, ProxiesRead: in.Syncz != nil,
		Revisions: []Revision{}, Tags: []Tag{}, Namespaces: []Namespace{}, Workloads: []Workload{},
		Gateways: []Gateway{}, Proxies: []Proxy{}, NodeAgents: []NodeAgent{}, Unmanaged: []UnmanagedPod{}, Warnings: []string{}}
	buildRevisions(s, in)
	r := s.Resolver()
	nsIndex := buildNamespaces(s, in, r)
	podOwner := buildWorkloads(s, in, r, nsIndex)
	buildUnmanaged(s, in, nsIndex, podOwner)
	buildGateways(s, in)
	buildProxies(s, in, podOwner)
	buildAmbient(s, in, nsIndex)
	for i := range s.Namespaces {
		n := &s.Namespaces[i]
		for _, w := range s.Workloads {
			if w.Namespace == n.Name {
				n.Workloads++
				n.Pods += w.Pods
				if w.NeedsRestart {
					n.NeedsRestart++
				}
			}
		}
	}
	return s
}

func buildRevisions(s *Snapshot, in Inputs) {
	byName := map[string]*Revision{}
	get := func(name string) *Revision {
		if rv, ok := byName[name]; ok {
			return rv
		}
		rv := &Revision{Name: name, Pods: []string{}, ConfigMaps: []string{}, Tags: []string{}}
		byName[name] = rv
		return rv
	}
	for _, d := range in.IstiodDeployments {
		rv := get(istio.RevisionOf(d.Labels))
		rv.Installed = true
		rv.Deployment = d.Name
		rv.Desired = ptrOr(d.Spec.Replicas, 1)
		rv.Ready = d.Status.ReadyReplicas
		rv.Helm = IsHelmOwned(d.Labels, d.Annotations)
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Name == "discovery" || len(d.Spec.Template.Spec.Containers) == 1 {
				rv.Image = c.Image
				rv.Version = istio.VersionFromImage(c.Image)
			}
		}
	}
	for _, p := range in.IstiodPods {
		if p.DeletionTimestamp != nil {
			continue
		}
		rv := get(istio.RevisionOf(p.Labels))
		rv.Pods = append(rv.Pods, p.Name)
	}
	for _, sz := range in.Syncz {
		if rv, ok := byName[sz.Revision]; ok && rv.Version == "" {
			rv.Version = sz.Version
		}
	}
	for _, w := range in.MutatingWebhooks {
		if !callsNamespace(w.Webhooks, in.IstioNamespace) {
			continue // another control plane's (--istio-namespace names one)
		}
		rev := w.Labels[istio.LabelRev]
		if tag, ok := w.Labels[istio.LabelTag]; ok {
			s.Tags = append(s.Tags, Tag{Name: tag, Revision: rev, Webhook: w.Name})
			continue
		}
		if rev == "" && !strings.HasPrefix(w.Name, istio.InjectorPrefix) {
			continue
		}
		if rev == "" {
			rev = istio.DefaultRevision
		}
		get(rev).InjectorWebhook = w.Name
	}
	for _, v := range in.ValidatingWebhooks {
		if v.Name == istio.DefaultValidatorName {
			if rv, ok := byName[istio.RevisionOf(v.Labels)]; ok {
				rv.DefaultValidator = true
			}
		}
	}
	for _, cm := range in.ConfigMaps {
		// Only a control plane's own ConfigMaps make a revision: istio-cni's config carries the label too.
		if rev, ok := cm.Labels[istio.LabelRev]; ok && slices.Contains(istio.ControlPlane(rev, in.IstioNamespace)["ConfigMap"], cm.Name) {
			rv := get(rev)
			rv.ConfigMaps = append(rv.ConfigMaps, cm.Name)
		}
	}
	sort.Slice(s.Tags, func(i, j int) bool { return s.Tags[i].Name < s.Tags[j].Name })
	for _, t := range s.Tags {
		if rv, ok := byName[t.Revision]; ok {
			rv.Tags = append(rv.Tags, t.Name)
		}
	}
	for _, rv := range byName {
		sort.Strings(rv.Pods)
		sort.Strings(rv.ConfigMaps)
		s.Revisions = append(s.Revisions, *rv)
	}
	sort.Slice(s.Revisions, func(i, j int) bool { return s.Revisions[i].Name < s.Revisions[j].Name })
	def, _, ok := s.Resolver().Default()
	for i := range s.Revisions {
		s.Revisions[i].Default = ok && s.Revisions[i].Name == def
	}
}

func buildNamespaces(s *Snapshot, in Inputs, r Resolver) map[string]*Namespace {
	for _, ns := range in.Namespaces {
		if in.Namespace != "" && ns.Name != in.Namespace {
			continue
		}
		n := Namespace{Name: ns.Name, InjectionLabel: ns.Labels[istio.LabelInjection], RevLabel: ns.Labels[istio.LabelRev], Conflicts: []string{},
			Terminating: ns.DeletionTimestamp != nil}
		n.Revision, n.Via, n.Conflicts = resolveNamespace(n.InjectionLabel, n.RevLabel, r)
		s.Namespaces = append(s.Namespaces, n)
	}
	sort.Slice(s.Namespaces, func(i, j int) bool { return s.Namespaces[i].Name < s.Namespaces[j].Name })
	idx := map[string]*Namespace{}
	for i := range s.Namespaces {
		idx[s.Namespaces[i].Name] = &s.Namespaces[i]
	}
	return idx
}

// resolveNamespace applies Istio's label precedence: istio-injection wins over istio.io/rev (IST0123),
// "enabled" means the default revision, and istio.io/rev names a revision or a tag.
func resolveNamespace(injection, rev string, r Resolver) (revision, via string, conflicts []string) {
	conflicts = []string{}
	if injection != "" && rev != "" {
		conflicts = append(conflicts, fmt.Sprintf("both istio-injection=%s and istio.io/rev=%s are set; istio-injection wins (IST0123)", injection, rev))
	}
	switch {
	case injection == "enabled":
		rv, v, ok := r.Default()
		if !ok {
			conflicts = append(conflicts, "istio-injection=enabled but there is no default revision or default tag")
			return "", "", conflicts
		}
		return rv, v, conflicts
	case injection != "":
		return "", "", conflicts
	case rev != "":
		rv, v, ok := r.Resolve(rev)
		if !ok {
			conflicts = append(conflicts, fmt.Sprintf("istio.io/rev=%s names no installed revision or tag", rev))
			return "", "", conflicts
		}
		return rv, v, conflicts
	}
	return "", "", conflicts
}

// desiredRevision is the revision a new pod from this template would be injected with.
func desiredRevision(nsRev string, ns *Namespace, tmplLabels map[string]string, r Resolver) (rev string, optOut bool) {
	if tmplLabels[istio.LabelSidecarInject] == "false" {
		return "", true
	}
	if ns != nil && ns.InjectionLabel != "" {
		return nsRev, false
	}
	if pr := tmplLabels[istio.LabelRev]; pr != "" {
		rv, _, ok := r.Resolve(pr)
		if ok {
			return rv, false
		}
		return "", false
	}
	if nsRev == "" && tmplLabels[istio.LabelSidecarInject] == "true" {
		rv, _, _ := r.Default()
		return rv, false
	}
	return nsRev, false
}

type ownerKey struct{ ns, kind, name string }

// PodOwner returns the workload that controls a pod: Deployment (through its ReplicaSet's
// pod-template-hash, without reading ReplicaSets), StatefulSet or DaemonSet.
func PodOwner(p *corev1.Pod) (kind, name string) { return podOwnerOf(p) }

func podOwnerOf(p *corev1.Pod) (kind, name string) {
	switch kind, name = controllerOf(p); kind {
	case "ReplicaSet":
		if h := p.Labels["pod-template-hash"]; h != "" && strings.HasSuffix(name, "-"+h) {
			return "Deployment", strings.TrimSuffix(name, "-"+h)
		}
		return "ReplicaSet", name
	case "StatefulSet", "DaemonSet":
		return kind, name
	}
	return "", ""
}

type podTemplate struct {
	kind, ns, name  string
	replicas, ready int32
	tmplLabels      map[string]string
	tmplAnnotations map[string]string
}

func buildWorkloads(s *Snapshot, in Inputs, r Resolver, nsIndex map[string]*Namespace) map[string]string {
	var tmpls []podTemplate
	for _, d := range in.Deployments {
		tmpls = append(tmpls, podTemplate{"Deployment", d.Namespace, d.Name, ptrOr(d.Spec.Replicas, 1), d.Status.ReadyReplicas, d.Spec.Template.Labels, d.Spec.Template.Annotations})
	}
	for _, st := range in.StatefulSets {
		tmpls = append(tmpls, podTemplate{"StatefulSet", st.Namespace, st.Name, ptrOr(st.Spec.Replicas, 1), st.Status.ReadyReplicas, st.Spec.Template.Labels, st.Spec.Template.Annotations})
	}
	for _, ds := range in.DaemonSets {
		tmpls = append(tmpls, podTemplate{"DaemonSet", ds.Namespace, ds.Name, ds.Status.DesiredNumberScheduled, ds.Status.NumberReady, ds.Spec.Template.Labels, ds.Spec.Template.Annotations})
	}
	pods := map[ownerKey][]*corev1.Pod{}
	podOwner := map[string]string{} // ns/pod → kind/name
	for i := range in.Pods {
		p := &in.Pods[i]
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		kind, name := podOwnerOf(p)
		if kind == "" {
			continue
		}
		k := ownerKey{p.Namespace, kind, name}
		pods[k] = append(pods[k], p)
		podOwner[p.Namespace+"/"+p.Name] = lowerKind(kind) + "/" + name
	}
	for _, t := range tmpls {
		if t.ns == in.IstioNamespace && t.tmplLabels[istio.LabelApp] == istio.IstiodApp {
			continue // istiod itself is a control plane, not a workload
		}
		ns := nsIndex[t.ns]
		nsRev := ""
		if ns != nil {
			nsRev = ns.Revision
		}
		w := Workload{Kind: t.kind, Namespace: t.ns, Name: t.name, Replicas: t.replicas, Ready: t.ready, InjectedRevisions: []string{},
			Gateway: istio.IsGatewayTemplate(t.tmplLabels, t.tmplAnnotations)}
		w.DesiredRevision, w.OptOut = desiredRevision(nsRev, ns, t.tmplLabels, r)
		w.PinnedRevision = t.tmplLabels[istio.LabelRev]
		seen := map[string]bool{}
		for _, p := range pods[ownerKey{t.ns, t.kind, t.name}] {
			w.Pods++
			rev, injected := istio.InjectedRevision(p.Labels, p.Annotations)
			if !injected {
				rev = ""
			}
			if !seen[rev] {
				seen[rev] = true
				w.InjectedRevisions = append(w.InjectedRevisions, rev)
			}
			if w.DesiredRevision != "" && rev != w.DesiredRevision {
				w.NeedsRestart = true
			}
		}
		sort.Strings(w.InjectedRevisions)
		s.Workloads = append(s.Workloads, w)
	}
	sort.Slice(s.Workloads, func(i, j int) bool { return s.Workloads[i].Key() < s.Workloads[j].Key() })
	return podOwner
}

// Labels istiod's gateway deployment controller puts on what it deploys for a Gateway API Gateway.
const (
	labelGatewayName    = "gateway.networking.k8s.io/gateway-name"
	labelGatewayManaged = "gateway.istio.io/managed"
)

func buildGateways(s *Snapshot, in Inputs) {
	versions := map[string]map[string]bool{} // ns/deployment → proxy image versions
	for i := range in.Pods {
		p := &in.Pods[i]
		kind, name := podOwnerOf(p)
		if kind != "Deployment" || p.DeletionTimestamp != nil {
			continue
		}
		for _, c := range p.Spec.Containers {
			if c.Name == istio.ProxyContainer {
				k := p.Namespace + "/" + name
				if versions[k] == nil {
					versions[k] = map[string]bool{}
				}
				if v := istio.VersionFromImage(c.Image); v != "" {
					versions[k][v] = true
				}
			}
		}
	}
	for _, d := range in.Deployments {
		if !istio.IsGatewayTemplate(d.Spec.Template.Labels, d.Spec.Template.Annotations) {
			continue
		}
		var rev string
		for _, w := range s.Workloads {
			if w.Kind == "Deployment" && w.Namespace == d.Namespace && w.Name == d.Name {
				rev = w.DesiredRevision
			}
		}
		g := Gateway{Namespace: d.Namespace, Name: d.Name, Revision: rev, Replicas: ptrOr(d.Spec.Replicas, 1), Ready: d.Status.ReadyReplicas,
			Services: []string{}, Versions: sortedKeys(versions[d.Namespace+"/"+d.Name]), Helm: IsHelmOwned(d.Labels, d.Annotations)}
		// A gateway istiod deployed for a Gateway API Gateway is not injected: the istiod that rendered it
		// labels its pods with its own revision.
		if gw := d.Spec.Template.Labels[labelGatewayName]; gw != "" && d.Spec.Template.Labels[labelGatewayManaged] != "" {
			g.GatewayAPI = d.Namespace + "/" + gw
			// istiod annotates every pod it renders with its revision; the label is there only when the
			// Gateway has one (its labels are copied), and may name a tag.
			if r := d.Spec.Template.Annotations[istio.LabelRev]; r != "" {
				g.Revision = r
			} else if g.Revision == "" {
				g.Revision = d.Spec.Template.Labels[istio.LabelRev]
			}
		}
		g.Services = append(g.Services, ServicesOf(in.Services, &d)...)
		s.Gateways = append(s.Gateways, g)
	}
	sort.Slice(s.Gateways, func(i, j int) bool {
		return s.Gateways[i].Namespace+"/"+s.Gateways[i].Name < s.Gateways[j].Namespace+"/"+s.Gateways[j].Name
	})
}

func buildProxies(s *Snapshot, in Inputs, podOwner map[string]string) {
	gateways := map[string]bool{}
	for _, w := range s.Workloads {
		if w.Gateway {
			gateways[w.Namespace+"/"+w.Ref()] = true
		}
	}
	for _, sz := range in.Syncz {
		if sz.Err != nil {
			rev := sz.Revision
			if rev == "" {
				rev = "unknown"
			}
			s.Warnings = append(s.Warnings, fmt.Sprintf("istiod %s (revision %s): syncz: %v", sz.Pod, rev, sz.Err))
			continue
		}
		for _, ps := range sz.Proxies {
			if in.Namespace != "" && ps.Namespace != in.Namespace {
				continue
			}
			owner := podOwner[ps.Namespace+"/"+ps.Pod]
			typ := ps.Type
			if typ == "" { // syncz does not say; a gateway's proxy is a router
				typ = "sidecar"
				if gateways[ps.Namespace+"/"+owner] {
					typ = "router"
				}
			}
			s.Proxies = append(s.Proxies, Proxy{
				ID: ps.ID, Pod: ps.Pod, Namespace: ps.Namespace, Workload: owner, Type: typ,
				Istiod: sz.Pod, Revision: sz.Revision, Version: ps.Version, State: ps.State(), Types: ps.Types,
			})
		}
	}
	sort.Slice(s.Proxies, func(i, j int) bool {
		a, b := s.Proxies[i], s.Proxies[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Pod != b.Pod {
			return a.Pod < b.Pod
		}
		return a.Istiod < b.Istiod
	})
}

// IsHelmOwned says whether a Helm release owns an object. Helm's own ownership annotation decides: helm
// sets it on everything a release installs and istioctl never does. Istio's chart templates stamp both
// installers' objects with chart labels (managed-by: Helm, helm.sh/chart) and operator labels
// (owning-resource: unknown), so those count only without the annotation (objects of Helm before 3.2).
func IsHelmOwned(labels, annotations map[string]string) bool {
	if annotations["meta.helm.sh/release-name"] != "" {
		return true
	}
	if labels["operator.istio.io/component"] != "" || labels["install.operator.istio.io/owning-resource"] != "" {
		return false
	}
	return labels["app.kubernetes.io/managed-by"] == "Helm" || labels["helm.sh/chart"] != ""
}

func ptrOr(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ServicesOf names the Services (of those given) that select a Deployment's pods, sorted.
func ServicesOf(services []corev1.Service, d *appsv1.Deployment) []string {
	var out []string
	for _, svc := range services {
		if svc.Namespace == d.Namespace && len(svc.Spec.Selector) > 0 &&
			labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, svc.Name)
		}
	}
	sort.Strings(out)
	return out
}

// callsNamespace says a webhook configuration calls a Service in the Istio namespace ns (or a URL: a
// remote or external istiod, which only its labels can place): a configuration of the same revision
// name calling another namespace's istiod belongs to that control plane.
func callsNamespace(hooks []admregv1.MutatingWebhook, ns string) bool {
	if ns == "" {
		return true
	}
	for _, h := range hooks {
		if h.ClientConfig.Service == nil || h.ClientConfig.Service.Namespace == ns {
			return true
		}
	}
	return len(hooks) == 0
}

// buildUnmanaged lists the injected pods outside every workload of the snapshot (podOwner holds the
// pods workloads own): what a restart of workloads leaves behind.
func buildUnmanaged(s *Snapshot, in Inputs, nsIndex map[string]*Namespace, podOwner map[string]string) {
	known := map[string]bool{}
	for _, w := range s.Workloads {
		known[w.Namespace+"/"+lowerKind(w.Kind)+"/"+w.Name] = true
	}
	for i := range in.Pods {
		p := &in.Pods[i]
		if p.Namespace == in.IstioNamespace || p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if o := podOwner[p.Namespace+"/"+p.Name]; o != "" && known[p.Namespace+"/"+o] {
			continue
		}
		rev, injected := istio.InjectedRevision(p.Labels, p.Annotations)
		if !injected {
			continue
		}
		u := UnmanagedPod{Namespace: p.Namespace, Pod: p.Name, InjectedRevision: rev}
		if n := nsIndex[p.Namespace]; n != nil {
			u.DesiredRevision = n.Revision
		}
		u.NeedsRestart = u.DesiredRevision != "" && u.DesiredRevision != rev
		to := u.DesiredRevision
		if to == "" {
			to = "the revision its namespace selects"
		}
		if kind, name := controllerOf(p); kind != "" {
			u.Owner = kind + "/" + name
		}
		u.Action = u.MoveTo(to)
		s.Unmanaged = append(s.Unmanaged, u)
	}
	sort.Slice(s.Unmanaged, func(i, j int) bool {
		return s.Unmanaged[i].Namespace+"/"+s.Unmanaged[i].Pod < s.Unmanaged[j].Namespace+"/"+s.Unmanaged[j].Pod
	})
}

// controllerOf is the kind and name of a pod's controller, as its owner reference says ("" for none).
func controllerOf(p *corev1.Pod) (kind, name string) {
	for _, o := range p.OwnerReferences {
		if o.Controller != nil && *o.Controller {
			return o.Kind, o.Name
		}
	}
	return "", ""
}

// MoveTo is the step that moves the pod onto revision rev: nothing but time for a Job's (its next
// pods are injected by rev), deleting the pods of another controller, re-creating a bare pod by hand.
func (u UnmanagedPod) MoveTo(rev string) string {
	kind, _, _ := strings.Cut(u.Owner, "/")
	switch kind {
	case "Job":
		return "a Job's pod keeps its proxy until it ends; the Job's (or its CronJob's) next pods are injected by " + rev
	case "":
		return fmt.Sprintf("no controller: delete and re-create it by hand (kubectl get pod %s -n %s -o yaml) to move it to %s", u.Pod, u.Namespace, rev)
	}
	return fmt.Sprintf("a %s no restart reaches: delete its pods (%s re-creates them) to move them to %s", kind, u.Owner, rev)
}

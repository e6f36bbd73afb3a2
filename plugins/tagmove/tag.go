package tagmove

import (
	"fmt"
	"sort"

	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/istio"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// TagServicePrefix names the Service istioctl creates for each tag (istiod-revision-tag-<tag>).
const TagServicePrefix = "istiod-revision-tag-"

// injectionClientConfig is how the revision's injector is called: what a tag pointing at it must use.
func injectionClientConfig(injector *admregv1.MutatingWebhookConfiguration) (admregv1.WebhookClientConfig, error) {
	for _, w := range injector.Webhooks {
		return *w.ClientConfig.DeepCopy(), nil
	}
	return admregv1.WebhookClientConfig{}, fmt.Errorf("injector %s has no webhooks", injector.Name)
}

// MoveWebhook points an existing tag webhook at another revision: every webhook calls the revision's
// injector; its selectors (which name the tag) stay as they are.
func MoveWebhook(tagWh, injector *admregv1.MutatingWebhookConfiguration, rev string) (*admregv1.MutatingWebhookConfiguration, error) {
	cc, err := injectionClientConfig(injector)
	if err != nil {
		return nil, err
	}
	out := tagWh.DeepCopy()
	for i := range out.Webhooks {
		out.Webhooks[i].ClientConfig = *cc.DeepCopy()
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	out.Labels[istio.LabelRev] = rev
	return out, nil
}

// NewWebhook derives a tag webhook from the revision's injector, as istioctl tag set does: the same
// webhooks with the revision name in their istio.io/rev selectors replaced by the tag. The default tag
// also serves istio-injection=enabled namespaces and pods asking sidecar.istio.io/inject=true.
func NewWebhook(injector *admregv1.MutatingWebhookConfiguration, tag, rev string) (*admregv1.MutatingWebhookConfiguration, error) {
	cc, err := injectionClientConfig(injector)
	if err != nil {
		return nil, err
	}
	out := &admregv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: istio.TagWebhookPrefix + tag, Labels: map[string]string{}}}
	for k, v := range injector.Labels {
		if k != "app" {
			out.Labels[k] = v
		}
	}
	out.Labels[istio.LabelRev] = rev
	out.Labels[istio.LabelTag] = tag
	for _, w := range injector.Webhooks {
		nw := *w.DeepCopy()
		nw.ClientConfig = *cc.DeepCopy()
		renameRev(nw.NamespaceSelector, rev, tag)
		renameRev(nw.ObjectSelector, rev, tag)
		out.Webhooks = append(out.Webhooks, nw)
	}
	if tag == istio.DefaultRevision && len(out.Webhooks) > 0 {
		base := out.Webhooks[0]
		ns := *base.DeepCopy()
		ns.Name = "namespace.sidecar-injector.istio.io"
		ns.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: istio.LabelInjection, Operator: metav1.LabelSelectorOpIn, Values: []string{"enabled"}}}}
		ns.ObjectSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: istio.LabelSidecarInject, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}}}}
		obj := *base.DeepCopy()
		obj.Name = "object.sidecar-injector.istio.io"
		obj.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: istio.LabelInjection, Operator: metav1.LabelSelectorOpDoesNotExist},
			{Key: istio.LabelRev, Operator: metav1.LabelSelectorOpDoesNotExist}}}
		obj.ObjectSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: istio.LabelSidecarInject, Operator: metav1.LabelSelectorOpIn, Values: []string{"true"}},
			{Key: istio.LabelRev, Operator: metav1.LabelSelectorOpDoesNotExist}}}
		out.Webhooks = append(out.Webhooks, ns, obj)
	}
	return out, nil
}

func renameRev(sel *metav1.LabelSelector, rev, tag string) {
	if sel == nil {
		return
	}
	for i, r := range sel.MatchExpressions {
		if r.Key != istio.LabelRev {
			continue
		}
		for j, v := range r.Values {
			if v == rev {
				sel.MatchExpressions[i].Values[j] = tag
			}
		}
	}
	if v, ok := sel.MatchLabels[istio.LabelRev]; ok && v == rev {
		sel.MatchLabels[istio.LabelRev] = tag
	}
}

// TagService returns the tag's Service selecting the revision's istiod: derived from the revision's
// istiod Service when the tag has none yet, else the existing one re-pointed.
func TagService(existing, revService *corev1.Service, tag, rev string) *corev1.Service {
	var out *corev1.Service
	if existing != nil {
		out = existing.DeepCopy()
	} else {
		out = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: TagServicePrefix + tag, Namespace: revService.Namespace, Labels: map[string]string{}},
			Spec: corev1.ServiceSpec{Ports: revService.Spec.Ports, Type: revService.Spec.Type}}
		for k, v := range revService.Labels {
			out.Labels[k] = v
		}
		out.Spec.Selector = map[string]string{}
		for k, v := range revService.Spec.Selector {
			out.Spec.Selector[k] = v
		}
		for i := range out.Spec.Ports {
			out.Spec.Ports[i].NodePort = 0
		}
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	out.Labels[istio.LabelRev] = rev
	out.Labels[istio.LabelTag] = tag
	if out.Spec.Selector == nil {
		out.Spec.Selector = map[string]string{"app": istio.IstiodApp}
	}
	out.Spec.Selector[istio.LabelRev] = rev
	return out
}

// MoveValidator points the default validator at the revision's own validating webhook.
func MoveValidator(def, revValidator *admregv1.ValidatingWebhookConfiguration, rev string) *admregv1.ValidatingWebhookConfiguration {
	out := def.DeepCopy()
	if len(revValidator.Webhooks) > 0 {
		cc := revValidator.Webhooks[0].ClientConfig
		for i := range out.Webhooks {
			out.Webhooks[i].ClientConfig = *cc.DeepCopy()
		}
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	out.Labels[istio.LabelRev] = rev
	return out
}

// Radius is who moves when a tag moves: namespaces selecting it and their workloads, and gateways
// whose pods select it. They move on their next restart.
type Radius struct {
	Namespaces []RadiusNamespace `json:"namespaces"`
	Gateways   []string          `json:"gateways"`
	Pods       int               `json:"pods"`
	// RollingNow are Gateway API gateways and waypoints following the tag: istiod re-deploys them the
	// moment it moves, not on a restart (istio/istio#59959).
	RollingNow []string `json:"rollingNow"`
	// Pinned are the gateways following the tag that --pin-gateways labels with their current revision
	// before the tag moves, so they stay where they are.
	Pinned []string `json:"pinned"`
}

// followsTag says which Gateway API gateways and waypoints resolve through tag, and how.
func followsTag(s *mesh.Snapshot, tag string) func(mesh.GatewayAPIGateway) (string, bool) {
	return func(g mesh.GatewayAPIGateway) (string, bool) {
		name, how := s.Selects(g)
		return ", through " + how, name == tag
	}
}

// RadiusNamespace is one namespace that follows the tag.
type RadiusNamespace struct {
	Name      string   `json:"name"`
	Label     string   `json:"label"`
	Workloads []string `json:"workloads"`
	Pods      int      `json:"pods"`
}

// BlastRadius finds what follows tag: namespaces labelled istio.io/rev=<tag> (and, for the default tag,
// istio-injection=enabled), their workloads, and gateways selecting the tag with their pod label.
func BlastRadius(s *mesh.Snapshot, tag string) Radius {
	r := Radius{Namespaces: []RadiusNamespace{}, Gateways: []string{}, RollingNow: []string{}, Pinned: []string{}}
	for _, n := range s.Namespaces {
		if n.Via != tag {
			continue
		}
		rn := RadiusNamespace{Name: n.Name, Label: n.Selector(), Workloads: []string{}}
		for _, w := range s.Workloads {
			if w.Namespace == n.Name && !w.OptOut && w.DesiredRevision != "" && (w.PinnedRevision == "" || n.InjectionLabel != "") {
				rn.Workloads = append(rn.Workloads, w.Ref())
				rn.Pods += w.Pods
			}
		}
		r.Pods += rn.Pods
		r.Namespaces = append(r.Namespaces, rn)
	}
	for _, w := range s.Workloads {
		if w.Gateway && w.PinnedRevision == tag {
			r.Gateways = append(r.Gateways, w.Namespace+"/"+w.Ref())
		}
	}
	sort.Strings(r.Gateways)
	return r
}

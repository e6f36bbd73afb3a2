package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	admregv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// repointer rewrites Istio webhooks that call an istiod Service (unreachable: there is no kube-proxy)
// to call the local istiod of that Service's revision, as kube-proxy would route them.
type repointer struct {
	kc    kubernetes.Interface
	ns    string
	ports *portBook
}

func newRepointer(kc kubernetes.Interface, ns string, ports *portBook) *repointer {
	return &repointer{kc: kc, ns: ns, ports: ports}
}

func (r *repointer) register(ctx context.Context, f informers.SharedInformerFactory) {
	mut := f.Admissionregistration().V1().MutatingWebhookConfigurations().Informer()
	_, _ = mut.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { r.mutating(ctx, o.(*admregv1.MutatingWebhookConfiguration)) },
		UpdateFunc: func(_, o any) { r.mutating(ctx, o.(*admregv1.MutatingWebhookConfiguration)) },
	})
	val := f.Admissionregistration().V1().ValidatingWebhookConfigurations().Informer()
	_, _ = val.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { r.validating(ctx, o.(*admregv1.ValidatingWebhookConfiguration)) },
		UpdateFunc: func(_, o any) { r.validating(ctx, o.(*admregv1.ValidatingWebhookConfiguration)) },
	})
}

func (r *repointer) mutating(ctx context.Context, w *admregv1.MutatingWebhookConfiguration) {
	var cfgs []admregv1.WebhookClientConfig
	for _, h := range w.Webhooks {
		cfgs = append(cfgs, h.ClientConfig)
	}
	r.patch(ctx, "mutating", w.Name, cfgs, func(p []byte) error {
		_, err := r.kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, w.Name, types.JSONPatchType, p, metav1.PatchOptions{})
		return err
	})
}

func (r *repointer) validating(ctx context.Context, w *admregv1.ValidatingWebhookConfiguration) {
	var cfgs []admregv1.WebhookClientConfig
	for _, h := range w.Webhooks {
		cfgs = append(cfgs, h.ClientConfig)
	}
	r.patch(ctx, "validating", w.Name, cfgs, func(p []byte) error {
		_, err := r.kc.AdmissionregistrationV1().ValidatingWebhookConfigurations().Patch(ctx, w.Name, types.JSONPatchType, p, metav1.PatchOptions{})
		return err
	})
}

func (r *repointer) patch(ctx context.Context, kind, name string, cfgs []admregv1.WebhookClientConfig, apply func([]byte) error) {
	var ops []map[string]any
	for i, c := range cfgs {
		if c.Service == nil || c.Service.Namespace != r.ns {
			continue
		}
		rev, err := r.revisionOfService(ctx, c.Service.Name)
		if err != nil {
			log.Printf("webhook %s/%s: %v", kind, name, err)
			continue
		}
		path := ""
		if c.Service.Path != nil {
			path = *c.Service.Path
		}
		url := fmt.Sprintf("https://localhost:%d%s", r.ports.get(rev).HTTPS, path)
		ops = append(ops,
			map[string]any{"op": "remove", "path": fmt.Sprintf("/webhooks/%d/clientConfig/service", i)},
			map[string]any{"op": "add", "path": fmt.Sprintf("/webhooks/%d/clientConfig/url", i), "value": url})
	}
	if len(ops) == 0 {
		return
	}
	p, _ := json.Marshal(ops)
	if err := apply(p); err != nil {
		log.Printf("webhook %s/%s: repoint: %v", kind, name, err)
		return
	}
	log.Printf("webhook %s/%s: repointed %d webhooks to the local istiod", kind, name, len(ops)/2)
}

// revisionOfService reads the revision an istiod Service selects (istio.io/rev), retrying briefly
// because a webhook can be created a moment before its Service.
func (r *repointer) revisionOfService(ctx context.Context, name string) (string, error) {
	var lastErr error
	for i := 0; i < 20; i++ {
		svc, err := r.kc.CoreV1().Services(r.ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			if rev := svc.Spec.Selector["istio.io/rev"]; rev != "" {
				return rev, nil
			}
			return "default", nil
		}
		lastErr = err
		time.Sleep(500 * time.Millisecond)
	}
	return "", lastErr
}

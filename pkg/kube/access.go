package kube

import (
	"context"
	"fmt"
	"sort"
	"sync"

	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Access is one verb on one resource, in one namespace ("" for cluster-scoped resources or every
// namespace): what a step will do, asked of the apiserver before it does anything.
type Access struct {
	Verb        string `json:"verb"`
	Group       string `json:"group,omitempty"`
	Resource    string `json:"resource"`
	Subresource string `json:"subresource,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
}

func (a Access) String() string {
	r := a.Resource
	if a.Subresource != "" {
		r += "/" + a.Subresource
	}
	if a.Group != "" {
		r += "." + a.Group
	}
	s := a.Verb + " " + r
	if a.Namespace != "" {
		s += " in " + a.Namespace
	}
	return s
}

// Can is a for every verb.
func Can(group, resource, namespace string, verbs ...string) []Access {
	out := make([]Access, 0, len(verbs))
	for _, v := range verbs {
		out = append(out, Access{Verb: v, Group: group, Resource: resource, Namespace: namespace})
	}
	return out
}

// Missing asks the apiserver (SelfSubjectAccessReview, 8 at a time) for each access once and returns
// those denied, sorted.
func Missing(ctx context.Context, k kubernetes.Interface, want []Access) ([]Access, error) {
	seen := map[Access]bool{}
	var uniq []Access
	for _, a := range want {
		if !seen[a] {
			seen[a] = true
			uniq = append(uniq, a)
		}
	}
	var (
		mu       sync.Mutex
		missing  []Access
		firstErr error
		wg       sync.WaitGroup
	)
	sem := make(chan struct{}, 8)
	for _, a := range uniq {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			r, err := k.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{Spec: authzv1.SelfSubjectAccessReviewSpec{
				ResourceAttributes: &authzv1.ResourceAttributes{Verb: a.Verb, Group: a.Group, Resource: a.Resource, Subresource: a.Subresource, Namespace: a.Namespace}}},
				metav1.CreateOptions{})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				if firstErr == nil {
					firstErr = fmt.Errorf("asking the apiserver whether %s is allowed: %w", a, err)
				}
			case !r.Status.Allowed:
				missing = append(missing, a)
			}
		}()
	}
	wg.Wait()
	sort.Slice(missing, func(i, j int) bool { return missing[i].String() < missing[j].String() })
	return missing, firstErr
}

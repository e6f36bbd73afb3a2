package step

import (
	"context"
	"fmt"
	"os"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
)

// Lock names and timings. A holder renews every LockRenew; a lease not renewed for LockDuration is
// taken over (its holder died without releasing it).
const (
	LockName          = "istio-upgrade-lock"
	AnnotationCommand = "istio-upgrade.io/command"
	AnnotationUser    = "istio-upgrade.io/user"
)

var (
	LockDuration = 30 * time.Second
	LockRenew    = 10 * time.Second
)

// Lock is a held Lease that serialises mutating steps on one cluster (per Istio namespace).
type Lock struct {
	k        kubernetes.Interface
	ns       string
	identity string
	stop     chan struct{}
	done     chan struct{}
	warn     func(string, ...any)
}

// Holder says who takes the lock.
type Holder struct {
	User    string
	Command string
}

// Acquire takes the lock or fails at once (exit 73) naming who holds it. A lease whose holder stopped
// renewing is taken over, with a warning.
func Acquire(ctx context.Context, k kubernetes.Interface, namespace string, h Holder, warn func(string, ...any)) (*Lock, error) {
	host, _ := os.Hostname()
	l := &Lock{k: k, ns: namespace, identity: fmt.Sprintf("%s@%s/%d", h.User, host, os.Getpid()), warn: warn}
	leases := k.CoordinationV1().Leases(namespace)
	now := metav1.NewMicroTime(time.Now())
	want := func(cur *coordinationv1.Lease) *coordinationv1.Lease {
		x := cur.DeepCopy()
		x.Name, x.Namespace = LockName, namespace
		if x.Annotations == nil {
			x.Annotations = map[string]string{}
		}
		x.Annotations[AnnotationCommand] = h.Command
		x.Annotations[AnnotationUser] = h.User
		x.Spec = coordinationv1.LeaseSpec{HolderIdentity: &l.identity, LeaseDurationSeconds: ptr.To(int32(LockDuration / time.Second)),
			AcquireTime: &now, RenewTime: &now}
		return x
	}
	for attempt := 0; attempt < 3; attempt++ {
		cur, err := leases.Get(ctx, LockName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err := leases.Create(ctx, want(&coordinationv1.Lease{}), metav1.CreateOptions{FieldManager: FieldManager})
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("lock: create lease %s/%s: %w", namespace, LockName, err)
			}
			l.start()
			return l, nil
		}
		if err != nil {
			return nil, fmt.Errorf("lock: read lease %s/%s: %w", namespace, LockName, err)
		}
		if holder := ptr.Deref(cur.Spec.HolderIdentity, ""); holder != "" {
			if !expired(cur, time.Now()) {
				return nil, cli.Errorf(cli.ExitLocked, "another step holds the lock: %s ran `%s` since %s (lease %s/%s, renewed %s ago); nothing was changed. Wait for it, or if it died, the lock frees itself %s after its last renewal",
					cur.Annotations[AnnotationUser], cur.Annotations[AnnotationCommand], since(cur.Spec.AcquireTime), namespace, LockName,
					sinceRenew(cur), LockDuration)
			}
			warn("warning: taking over the lock from %s (`%s`), which stopped renewing it %s ago", cur.Annotations[AnnotationUser], cur.Annotations[AnnotationCommand], sinceRenew(cur))
		}
		_, err = leases.Update(ctx, want(cur), metav1.UpdateOptions{FieldManager: FieldManager})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("lock: take lease %s/%s: %w", namespace, LockName, err)
		}
		l.start()
		return l, nil
	}
	return nil, cli.Errorf(cli.ExitLocked, "another step took the lock (lease %s/%s) at the same moment; nothing was changed", namespace, LockName)
}

func expired(l *coordinationv1.Lease, now time.Time) bool {
	if l.Spec.RenewTime == nil {
		return true
	}
	d := time.Duration(ptr.Deref(l.Spec.LeaseDurationSeconds, int32(LockDuration/time.Second))) * time.Second
	return now.After(l.Spec.RenewTime.Add(d))
}

func since(t *metav1.MicroTime) string {
	if t == nil {
		return "an unknown time"
	}
	return t.UTC().Format(time.RFC3339)
}

func sinceRenew(l *coordinationv1.Lease) string {
	if l.Spec.RenewTime == nil {
		return "an unknown time"
	}
	return time.Since(l.Spec.RenewTime.Time).Round(time.Second).String()
}

// start renews the lease until Release.
func (l *Lock) start() {
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(l.done)
		t := time.NewTicker(LockRenew)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				if err := l.renew(); err != nil {
					l.warn("warning: lock: %v", err)
				}
			}
		}
	}()
}

func (l *Lock) renew() error {
	ctx, cancel := context.WithTimeout(context.Background(), LockRenew)
	defer cancel()
	now := metav1.NewMicroTime(time.Now())
	patch := fmt.Sprintf(`{"spec":{"renewTime":%q}}`, now.UTC().Format(metav1.RFC3339Micro))
	cur, err := l.k.CoordinationV1().Leases(l.ns).Get(ctx, LockName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	if ptr.Deref(cur.Spec.HolderIdentity, "") != l.identity {
		return fmt.Errorf("lost: %s holds it now", ptr.Deref(cur.Spec.HolderIdentity, "nobody"))
	}
	_, err = l.k.CoordinationV1().Leases(l.ns).Patch(ctx, LockName, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: FieldManager})
	return err
}

// Release stops renewing and deletes the lease if it is still ours.
func (l *Lock) Release() {
	close(l.stop)
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cur, err := l.k.CoordinationV1().Leases(l.ns).Get(ctx, LockName, metav1.GetOptions{})
	if err != nil || ptr.Deref(cur.Spec.HolderIdentity, "") != l.identity {
		return
	}
	_ = l.k.CoordinationV1().Leases(l.ns).Delete(ctx, LockName, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &cur.UID, ResourceVersion: &cur.ResourceVersion}})
}

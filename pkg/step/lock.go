package step

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/kube"
)

// Lock names and timings, as client-go's leader election judges a lease: a holder renews every
// LockRenew and stops writing once it could not renew for LockDuration/2; another run takes a lease
// over only after it watched it, on its own clock, go unchanged for LockDuration. No two machines'
// clocks are ever compared.
const (
	LockName          = "istio-upgrade-lock"
	AnnotationCommand = "istio-upgrade.io/command"
	AnnotationUser    = "istio-upgrade.io/user"
)

// LeaseEnv sets the lock's lease for one process (e.g. 60s over a slow link; the e2e suite uses 10s
// to keep its fault tests short). The holder writes it into the lease; a watcher waits at least as long.
const LeaseEnv = "KUBECTL_ISTIO_UPGRADE_LOCK_LEASE"

var (
	LockDuration = 30 * time.Second
	LockRenew    = 5 * time.Second
	// lockPoll is how often a lease that looks abandoned is looked at while it is watched.
	lockPoll = time.Second
)

// ApplyLeaseEnv applies LeaseEnv when it holds a duration of at least 6 s (renewals every sixth of it).
func ApplyLeaseEnv() error {
	v := os.Getenv(LeaseEnv)
	if v == "" {
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 6*time.Second {
		return cli.UsageErrorf("%s=%q: want a duration of at least 6s", LeaseEnv, v)
	}
	LockDuration, LockRenew = d, d/6
	return nil
}

// Lock is a held Lease that serialises mutating steps on one cluster (per Istio namespace).
type Lock struct {
	k        kubernetes.Interface
	ns       string
	identity string
	warn     func(string, ...any)

	mu    sync.Mutex
	lease *coordinationv1.Lease
	// renewed is when this process last renewed, on its own clock (wall and monotonic both: a
	// suspended laptop stops the monotonic clock, not the wall one).
	renewed time.Time
	lostWhy string
	lost    chan struct{}
	// tookFrom is the resource version of the lease this run took over ("" when it created it).
	tookFrom string
	stop     chan struct{}
	done     chan struct{}
}

// Holder says who takes the lock.
type Holder struct {
	User    string
	Command string
}

// TookFrom is the resource version of the lease this run took over or reused ("" when it created one).
func (l *Lock) TookFrom() string { return l.tookFrom }

// Identity is the holder identity the lock writes: who, where, which process.
func (l *Lock) Identity() string { return l.identity }

// Acquire takes the lock or fails (exit 73) naming who holds it. A lease renewed recently by its
// holder's clock is refused at once; one that looks abandoned is watched for LockDuration and taken
// over only if it did not change meanwhile (its holder is gone), with a warning.
func Acquire(ctx context.Context, k kubernetes.Interface, namespace string, h Holder, p *cli.Progress) (*Lock, error) {
	host, _ := os.Hostname()
	l := &Lock{k: k, ns: namespace, identity: fmt.Sprintf("%s@%s/%d", h.User, host, os.Getpid()), warn: p.Printf, lost: make(chan struct{})}
	leases := k.CoordinationV1().Leases(namespace)
	want := func(cur *coordinationv1.Lease) *coordinationv1.Lease {
		now := metav1.NewMicroTime(time.Now())
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
			got, err := leases.Create(ctx, want(&coordinationv1.Lease{}), metav1.CreateOptions{FieldManager: FieldManager})
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("lock: create lease %s/%s: %w", namespace, LockName, err)
			}
			l.start(got)
			return l, nil
		}
		if err != nil {
			return nil, fmt.Errorf("lock: read lease %s/%s: %w", namespace, LockName, err)
		}
		if holder := ptr.Deref(cur.Spec.HolderIdentity, ""); holder != "" {
			if cur, err = watchHolder(ctx, leases, cur, p); err != nil {
				return nil, err
			}
			l.warn("warning: taking over the lock from %s (`%s`): its lease did not change while watched", cur.Annotations[AnnotationUser], cur.Annotations[AnnotationCommand])
		}
		// The update carries the resource version we judged: a holder renewing meanwhile wins.
		l.tookFrom = cur.ResourceVersion
		got, err := leases.Update(ctx, want(cur), metav1.UpdateOptions{FieldManager: FieldManager})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("lock: take lease %s/%s: %w", namespace, LockName, err)
		}
		l.start(got)
		return l, nil
	}
	return nil, cli.Errorf(cli.ExitLocked, "another step took the lock (lease %s/%s) at the same moment; nothing was changed", namespace, LockName)
}

// watchHolder decides whether a held lease's holder is alive. Renewed within LockDuration by the
// holder's own clock: alive, refused at once (a skewed clock can only make this refuse, never take
// over). Otherwise the lease is watched on this machine's clock: any change means alive; none for
// LockDuration means gone, and the lease as last seen is returned to take over.
func watchHolder(ctx context.Context, leases interface {
	Get(context.Context, string, metav1.GetOptions) (*coordinationv1.Lease, error)
}, cur *coordinationv1.Lease, p *cli.Progress) (*coordinationv1.Lease, error) {
	// The holder stops writing after half of its own lease: watching for the longer of its lease and
	// ours is always enough.
	wait := max(LockDuration, time.Duration(ptr.Deref(cur.Spec.LeaseDurationSeconds, 0))*time.Second)
	held := func(l *coordinationv1.Lease, how string) error {
		return cli.Errorf(cli.ExitLocked, "another step holds the lock: %s ran `%s` since %s (lease %s/%s, %s); nothing was changed. Wait for it; if it died, a later step takes the lock over once it has seen the lease unchanged for %s",
			l.Annotations[AnnotationUser], l.Annotations[AnnotationCommand], since(l.Spec.AcquireTime), l.Namespace, l.Name, how, wait)
	}
	if r := cur.Spec.RenewTime; r != nil && time.Since(r.Time) < wait {
		return nil, held(cur, "renewed "+sinceRenew(cur)+" ago")
	}
	start := time.Now()
	defer p.Done()
	t := time.NewTicker(lockPoll)
	defer t.Stop()
	for time.Since(start) < wait {
		p.Update("lock: %s's lease looks abandoned; watching it for %s before taking it over (%s so far)", ptr.Deref(cur.Spec.HolderIdentity, ""), wait, time.Since(start).Round(time.Second))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		now, err := leases.Get(ctx, LockName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, cli.Errorf(cli.ExitLocked, "the lock's holder released it while this step watched it: nothing was changed; rerun to plan on what it left")
		}
		if err != nil {
			continue // cannot see it: keep watching, take nothing over
		}
		if now.ResourceVersion != cur.ResourceVersion {
			return nil, held(now, "renewed while this step watched it")
		}
	}
	return cur, nil
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

// start renews the lease until Release, and declares it lost when renewing fails for LockDuration/2
// or another holder took it.
func (l *Lock) start(got *coordinationv1.Lease) {
	l.lease, l.renewed = got, time.Now()
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(l.done)
		next := LockRenew
		for {
			select {
			case <-l.stop:
				return
			case <-l.lost:
				return
			case <-time.After(next):
			}
			if err := l.Held(); err != nil {
				return
			}
			next = LockRenew
			if err := l.renew(); err != nil {
				l.warn("warning: lock: %v", err)
				next = lockPoll
			}
		}
	}()
}

// elapsed is how long ago t was on this machine, the larger of the monotonic and the wall reading.
func elapsed(t time.Time) time.Duration {
	mono, wall := time.Since(t), time.Now().Round(0).Sub(t.Round(0))
	if wall > mono {
		return wall
	}
	return mono
}

// Held says whether this run may still write: nil, or why not (the lock's exit code).
func (l *Lock) Held() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lostWhy == "" {
		if d := elapsed(l.renewed); d > LockDuration/2 {
			l.loseLocked(fmt.Sprintf("its lease was not renewed for %s (more than half its %s)", d.Round(time.Second), LockDuration))
		}
	}
	if l.lostWhy != "" {
		return cli.Errorf(cli.ExitLocked, "lost the lock: %s; stopped before its next write", l.lostWhy)
	}
	return nil
}

// Lost is closed when the lock is lost.
func (l *Lock) Lost() <-chan struct{} { return l.lost }

func (l *Lock) loseLocked(why string) {
	if l.lostWhy == "" {
		l.lostWhy = why
		close(l.lost)
	}
}

// renew writes a new renewTime over the lease as this run last wrote it: if anyone else wrote it since
// (a takeover), the resource version no longer matches and the lock is lost.
func (l *Lock) renew() error {
	ctx, cancel := context.WithTimeout(kube.Unfenced(context.Background()), LockRenew)
	defer cancel()
	l.mu.Lock()
	x := l.lease.DeepCopy()
	l.mu.Unlock()
	now := metav1.NewMicroTime(time.Now())
	x.Spec.RenewTime = &now
	got, err := l.k.CoordinationV1().Leases(l.ns).Update(ctx, x, metav1.UpdateOptions{FieldManager: FieldManager})
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
		holder := "nobody"
		if cur, gerr := l.k.CoordinationV1().Leases(l.ns).Get(ctx, LockName, metav1.GetOptions{}); gerr == nil {
			if ptr.Deref(cur.Spec.HolderIdentity, "") == l.identity {
				l.lease = cur // our own lease, written meanwhile (by ourselves): go on from it
				return fmt.Errorf("renew: the lease changed; renewing again")
			}
			holder = ptr.Deref(cur.Spec.HolderIdentity, "nobody")
		}
		l.loseLocked(fmt.Sprintf("%s holds it now", holder))
		return fmt.Errorf("lost: %s holds it now", holder)
	case err != nil:
		return fmt.Errorf("renew: %w", err)
	}
	if l.lostWhy == "" {
		l.lease, l.renewed = got, time.Now()
	}
	return nil
}

// Release stops renewing and deletes the lease if it is still ours (never after losing it).
func (l *Lock) Release() {
	close(l.stop)
	<-l.done
	if l.Held() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(kube.Unfenced(context.Background()), 10*time.Second)
	defer cancel()
	l.mu.Lock()
	cur := l.lease
	l.mu.Unlock()
	_ = l.k.CoordinationV1().Leases(l.ns).Delete(ctx, LockName, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &cur.UID, ResourceVersion: &cur.ResourceVersion}})
}

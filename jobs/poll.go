package jobs

import (
	"context"
	"time"
)

// poll calls check at once and then every interval until it reports done,
// fails, or ctx ends: the one way a job waits on a provider's state.
func poll(ctx context.Context, interval time.Duration, check func(context.Context) (done bool, err error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		done, err := check(ctx)
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

package alerting

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/hostfleet/provisiond/adapters/webhook"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/queries"
)

// Webhooks are where a team's notifications go. They carry credentials (a
// Discord webhook's token), so they are kept sealed.
type Webhooks struct {
	Discord string `json:"discord,omitempty"`
	Generic string `json:"generic,omitempty"`
}

// Notification channels and events.
const (
	ChannelDiscord = "discord"
	ChannelWebhook = "webhook"
	EventFiring    = "firing"
	EventResolved  = "resolved"
)

// NotifyArgs deliver one firing or resolving to one channel of the team.
type NotifyArgs struct {
	AlertID uuid.UUID `json:"alertId"`
	Event   string    `json:"event"`
	Channel string    `json:"channel"`
}

// Kind implements jobs.Args.
func (NotifyArgs) Kind() string { return "alert.notify" }

// InsertOpts implements jobs.ArgsWithInsertOpts: notifications do not hold
// their service, and a receiver gets a good while to come back.
func (NotifyArgs) InsertOpts() jobs.InsertOpts {
	return jobs.InsertOpts{Queue: jobs.QueueDefault, MaxAttempts: 8, Timeout: time.Minute}
}

// notifyNamespace derives notification job ids, so that handing an alert
// over twice makes one job per channel.
var notifyNamespace = uuid.MustParse("6f1d3c52-86a8-4be4-9d4e-2f0a3b9e51c7")

// Notifier hands alerts' firings and resolvings to notification jobs, and
// is the worker that delivers them.
type Notifier struct {
	Jobs    *jobs.Client
	Queries *queries.Queries
	Sealer  *jobs.Sealer
	Sender  *webhook.Sender
	// Observer, when set, counts deliveries by channel and outcome.
	Observer interface {
		ObserveNotification(channel string, err error)
	}
}

// HandOver makes a notification job for every firing and resolving of the
// services' alerts not handed over yet, one per channel the team has, and
// marks them handed over. A crash between the two makes the same jobs
// again, which their derived ids turn into nothing.
func (n *Notifier) HandOver(ctx context.Context, q *queries.Queries, services []uuid.UUID) (int, error) {
	alerts, err := q.UnnotifiedAlerts(ctx, services)
	if err != nil || len(alerts) == 0 {
		return 0, err
	}
	var firing, resolved []uuid.UUID
	made := 0
	for _, a := range alerts {
		var events []string
		if !a.FiringNotified {
			events = append(events, EventFiring)
			firing = append(firing, a.ID)
		}
		if a.ResolvedAt != nil && !a.ResolvedNotified {
			events = append(events, EventResolved)
			resolved = append(resolved, a.ID)
		}
		var channels []string
		if a.DiscordWebhookHint != nil && *a.DiscordWebhookHint != "" {
			channels = append(channels, ChannelDiscord)
		}
		if a.GenericWebhookHint != nil && *a.GenericWebhookHint != "" {
			channels = append(channels, ChannelWebhook)
		}
		for _, ev := range events {
			for _, ch := range channels {
				id := uuid.NewSHA1(notifyNamespace, []byte(a.ID.String()+"/"+ev+"/"+ch))
				if _, _, err := n.Jobs.Insert(ctx, NotifyArgs{AlertID: a.ID, Event: ev, Channel: ch},
					jobs.Request{TeamID: a.TeamID, ServiceID: a.ServiceID, RequestedBy: "alerting", JobID: id}); err != nil {
					return made, fmt.Errorf("notification of alert %s: %w", a.ID, err)
				}
				made++
			}
		}
	}
	if err := q.MarkFiringNotified(ctx, firing); err != nil {
		return made, fmt.Errorf("mark alerts notified: %w", err)
	}
	if err := q.MarkResolvedNotified(ctx, resolved); err != nil {
		return made, fmt.Errorf("mark alerts notified: %w", err)
	}
	return made, nil
}

// Work delivers one notification. An alert or channel removed meanwhile
// leaves nothing to deliver.
func (n *Notifier) Work(ctx context.Context, job *jobs.Job[NotifyArgs]) error {
	a := job.Args
	alert, err := n.Queries.GetFiredAlert(ctx, a.AlertID)
	if errors.Is(err, pgx.ErrNoRows) {
		job.Log.Info("alert is gone; nothing to notify", "alert_id", a.AlertID)
		return nil
	}
	if err != nil {
		return fmt.Errorf("load alert: %w", err)
	}
	settings, err := n.Queries.GetMonitoringSettings(ctx, alert.TeamID)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && settings.SealedWebhooks == nil) {
		job.Log.Info("team has no webhooks; nothing to notify", "alert_id", a.AlertID)
		return nil
	}
	if err != nil {
		return fmt.Errorf("load monitoring settings: %w", err)
	}
	var hooks Webhooks
	if err := n.Sealer.Open(alert.TeamID, settings.SealedWebhooks, &hooks); err != nil {
		return fmt.Errorf("open webhooks: %w", err)
	}
	e := webhook.Event{
		ID: a.AlertID.String() + ":" + a.Event, Kind: a.Event, AlertID: alert.ID.String(), RuleID: alert.RuleID.String(),
		ServiceID: alert.ServiceID.String(), ServiceName: alert.ServiceName, Profile: settings.ProfileName,
		MetricType: alert.MetricType, Operator: alert.Operator, Threshold: alert.Threshold, Unit: Unit(alert.MetricType),
		Value: alert.Value, Severity: alert.Severity, DurationMinutes: int(alert.DurationMinutes), FiredAt: alert.FiredAt,
	}
	if a.Event == EventResolved {
		if alert.ResolvedAt == nil {
			return fmt.Errorf("alert %s has not resolved", alert.ID)
		}
		e.ResolvedAt = alert.ResolvedAt
		if alert.ResolvedValue.Valid {
			e.Value = alert.ResolvedValue.Float64
		}
	}
	switch a.Channel {
	case ChannelDiscord:
		if hooks.Discord == "" {
			return nil
		}
		err = n.Sender.Discord(ctx, hooks.Discord, e)
	case ChannelWebhook:
		if hooks.Generic == "" {
			return nil
		}
		var key string
		if err := n.Sealer.Open(alert.TeamID, settings.SealedSigningKey, &key); err != nil {
			return fmt.Errorf("open signing key: %w", err)
		}
		err = n.Sender.Generic(ctx, hooks.Generic, []byte(key), e)
	default:
		return fmt.Errorf("unknown channel %q", a.Channel)
	}
	if n.Observer != nil {
		n.Observer.ObserveNotification(a.Channel, err)
	}
	if err == nil {
		job.Log.Info("notification delivered", "alert_id", a.AlertID, "event", a.Event, "channel", a.Channel)
	}
	return err
}

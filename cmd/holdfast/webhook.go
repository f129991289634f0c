package main

import (
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast"
)

func webhookCmd(e env) *cobra.Command {
	var f clientFlags
	c := &cobra.Command{Use: "webhook", Short: "Register endpoints that receive signed events, and inspect their deliveries (admin)",
		Example: "  holdfast webhook create --url https://shop.example/hooks/holdfast --events hold.confirmed,hold.expired --key $ADMIN_KEY"}
	f.register(c, e)
	row := func(w holdfast.Webhook) []string {
		events := "all"
		if len(w.Events) > 0 {
			s := make([]string, len(w.Events))
			for i, t := range w.Events {
				s[i] = string(t)
			}
			events = strings.Join(s, ",")
		}
		return []string{w.ID, w.URL, events, strconv.FormatBool(w.Enabled), w.Description}
	}
	const header = "ID\tURL\tEVENTS\tENABLED\tDESCRIPTION"
	var url, events, description string
	create := &cobra.Command{Use: "create", Short: "Register an endpoint; its signing secret is shown only once", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w, err := f.client().CreateWebhook(cmd.Context(), holdfast.Webhook{URL: url, Events: eventTypes(events), Description: description})
			if err != nil {
				return err
			}
			// The secret, shown this once, is in the JSON answer too.
			shown := struct {
				holdfast.Webhook
				Secret string `json:"secret"`
			}{w, w.Secret}
			f.print(e.stdout, shown, header+"\tSECRET", append(row(w), w.Secret))
			return nil
		}}
	create.Flags().StringVar(&url, "url", "", "the endpoint (http or https)")
	create.Flags().StringVar(&events, "events", "", "comma-separated event types to send (default: all)")
	create.Flags().StringVar(&description, "description", "", "what the endpoint is for")
	_ = create.MarkFlagRequired("url")
	list := &cobra.Command{Use: "list", Short: "List the webhooks (never a secret)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ws, err := f.client().Webhooks(cmd.Context())
			if err != nil {
				return err
			}
			rows := make([][]string, len(ws))
			for i, w := range ws {
				rows[i] = row(w)
			}
			f.print(e.stdout, ws, header, rows...)
			return nil
		}}
	update := func(use, short string, patch func(cmd *cobra.Command) holdfast.WebhookPatch) *cobra.Command {
		return &cobra.Command{Use: use + " ID", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				w, err := f.client().UpdateWebhook(cmd.Context(), args[0], patch(cmd))
				if err != nil {
					return err
				}
				f.print(e.stdout, w, header, row(w))
				return nil
			}}
	}
	yes, no := true, false
	disable := update("disable", "Stop sending to an endpoint; nothing is queued for it while disabled", func(*cobra.Command) holdfast.WebhookPatch {
		return holdfast.WebhookPatch{Enabled: &no}
	})
	enable := update("enable", "Send to an endpoint again, from the events written from now on", func(*cobra.Command) holdfast.WebhookPatch {
		return holdfast.WebhookPatch{Enabled: &yes}
	})
	var newURL, newEvents, newDescription string
	set := update("update", "Change an endpoint's URL, events or description", func(cmd *cobra.Command) holdfast.WebhookPatch {
		var p holdfast.WebhookPatch
		if cmd.Flags().Changed("url") {
			p.URL = &newURL
		}
		if cmd.Flags().Changed("events") {
			ev := eventTypes(newEvents)
			p.Events = &ev
		}
		if cmd.Flags().Changed("description") {
			p.Description = &newDescription
		}
		return p
	})
	set.Flags().StringVar(&newURL, "url", "", "the new endpoint")
	set.Flags().StringVar(&newEvents, "events", "", "comma-separated event types (empty: all)")
	set.Flags().StringVar(&newDescription, "description", "", "")
	del := &cobra.Command{Use: "delete ID", Short: "Delete an endpoint and its deliveries", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := f.client().DeleteWebhook(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			f.print(e.stdout, w, header, row(w))
			return nil
		}}
	var status string
	var limit int
	deliveryRow := func(d holdfast.Delivery) []string {
		next := "-"
		if d.NextAttemptAt != nil {
			next = d.NextAttemptAt.Format(time.RFC3339)
		}
		return []string{d.ID, string(d.EventType), string(d.Status), strconv.Itoa(d.Attempts), strconv.Itoa(d.LastStatusCode), d.LastError, next}
	}
	const deliveryHeader = "ID\tEVENT\tSTATUS\tATTEMPTS\tLAST STATUS\tLAST ERROR\tNEXT ATTEMPT"
	deliveries := &cobra.Command{Use: "deliveries ID", Short: "A webhook's deliveries, newest first", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ds, err := f.client().Deliveries(cmd.Context(), args[0], holdfast.DeliveryStatus(status), "", limit)
			if err != nil {
				return err
			}
			rows := make([][]string, len(ds))
			for i, d := range ds {
				rows[i] = deliveryRow(d)
			}
			f.print(e.stdout, ds, deliveryHeader, rows...)
			return nil
		}}
	deliveries.Flags().StringVar(&status, "status", "", "pending, succeeded or failed (default: all)")
	deliveries.Flags().IntVar(&limit, "limit", 50, "how many")
	retry := &cobra.Command{Use: "retry ID DELIVERY", Short: "Send a delivery again now, with a fresh retry schedule", Args: cobra.ExactArgs(2),
		Example: "  holdfast webhook retry wh_x3k9q2m7ab evt_1042",
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := f.client().RetryDelivery(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			f.print(e.stdout, d, deliveryHeader, deliveryRow(d))
			return nil
		}}
	c.AddCommand(create, list, set, disable, enable, del, deliveries, retry)
	return c
}

// eventTypes splits a comma-separated list; empty is none (all events).
func eventTypes(s string) []holdfast.EventType {
	out := []holdfast.EventType{}
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, holdfast.EventType(t))
		}
	}
	return out
}

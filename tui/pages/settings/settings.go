// Package settings is the installer's third page: a form made from the
// provider's config schema (for a new environment) and the artifact's
// ARGs, checked field by field as it is filled in and then, as a whole,
// by the plan and the provider's Validate, whose diagnostics appear under
// the fields they name. Secret settings are masked and never shown again.
package settings

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/spinner"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/huh"
	"github.com/charmbracelet/x/ansi"

	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/host"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/tui/common"
	"k2.dev/k2/tui/components/steps"
)

// field is one input of the form.
type field struct {
	name     string // the setting or ARG
	arg      bool   // an ARG, not a provider setting
	schema   sdk.ConfigField
	value    *string
	initial  string // what it was prefilled with
	required bool
	// problem is the last diagnostic about this field, for the value it
	// had then.
	problem, problemValue string
}

// Page is the settings page.
type Page struct {
	*common.Common
	fields   []*field
	form     *huh.Form
	checking bool
	started  time.Time
	problems []string // diagnostics that name no field, plan errors
	warnings []string
	spinner  spinner.Model
	gen      int
	width    int
	height   int
}

type validatedMsg struct {
	gen   int
	plan  *engine.Plan
	cfg   sdk.Config
	diags sdk.Diagnostics
	err   error
}

// New returns the page for the choices so far.
func New(c *common.Common) *Page {
	p := &Page{Common: c}
	p.spinner = spinner.New(spinner.WithSpinner(spinner.MiniDot), spinner.WithStyle(c.Styles.Running))
	ch := c.Choices
	if ch.EnvRecord == nil && ch.Provider != nil {
		stored := map[string]any{}
		_ = sdk.Config(ch.ProviderConfig).Decode(&stored)
		for _, f := range ch.Provider.ConfigSchema {
			v := ""
			if x, ok := stored[f.Name]; ok {
				v = configString(x)
			}
			p.fields = append(p.fields, &field{name: f.Name, schema: f, value: &v, initial: "", required: f.Required})
		}
	}
	envVals := map[string]string{}
	if ch.EnvRecord != nil {
		envVals = ch.EnvRecord.Values
	}
	for _, a := range ch.Artifact.Config.Args {
		f := &field{name: a.Name, arg: true, required: a.Default == nil}
		if a.Default != nil {
			f.initial = *a.Default
		}
		if v, ok := envVals[a.Name]; ok {
			f.initial = v
		}
		v := f.initial
		if s, ok := ch.Sets[a.Name]; ok {
			v = s
		}
		f.value = &v
		if i := p.fieldIndex(a.Name, true); i >= 0 { // a later ARG replaces an earlier one
			p.fields[i] = f
			continue
		}
		p.fields = append(p.fields, f)
	}
	p.build()
	return p
}

func configString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = fmt.Sprint(e)
		}
		return strings.Join(parts, ",")
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

func (p *Page) fieldIndex(name string, arg bool) int {
	for i, f := range p.fields {
		if f.name == name && f.arg == arg {
			return i
		}
	}
	return -1
}

// build makes the form from the fields, with the problems found so far.
func (p *Page) build() {
	var provider, args []huh.Field
	for _, f := range p.fields {
		in := huh.NewInput().Key(formKey(f)).Title(title(f)).Value(f.value).Validate(f.validate)
		desc := p.description(f)
		if f.problem != "" {
			desc = "✗ " + f.problem
		}
		in.Description(desc)
		if f.schema.Secret {
			in.EchoMode(huh.EchoModePassword)
		}
		if f.arg {
			args = append(args, in)
		} else {
			provider = append(provider, in)
		}
	}
	var groups []*huh.Group
	if len(provider) > 0 {
		groups = append(groups, huh.NewGroup(provider...).Title("Provider "+p.Choices.Provider.Name).
			Description("Settings of environment "+p.Choices.Env+"; empty ones take the provider's default."))
	}
	if len(args) > 0 {
		groups = append(groups, huh.NewGroup(args...).Title("Parameters").
			Description("The artifact's ARGs for "+p.Choices.Env+" (like --set)."))
	}
	if len(groups) == 0 {
		p.form = nil
		return
	}
	km := huh.NewDefaultKeyMap()
	km.Quit = key.NewBinding(key.WithDisabled()) // Ctrl-C is the installer's
	km.Input.Next = key.NewBinding(key.WithKeys("enter", "tab", "down"), key.WithHelp("enter", "next"))
	km.Input.Prev = key.NewBinding(key.WithKeys("shift+tab", "up"), key.WithHelp("shift+tab", "back"))
	p.form = huh.NewForm(groups...).WithTheme(theme(p.Common)).WithKeyMap(km).WithShowHelp(false).
		WithWidth(max(20, p.width)).WithHeight(max(5, p.formHeight()))
}

func formKey(f *field) string {
	if f.arg {
		return "arg." + f.name
	}
	return "config." + f.name
}

func title(f *field) string {
	t := f.name
	if !f.arg && f.schema.Type != "" && f.schema.Type != sdk.TypeString {
		t += " (" + f.schema.Type + ")"
	}
	if f.required {
		t += " *"
	}
	return t
}

func (p *Page) description(f *field) string {
	if f.arg {
		switch {
		case p.Choices.EnvRecord != nil && p.Choices.EnvRecord.Values[f.name] != "":
			return "stored for " + p.Choices.Env + ": " + p.Choices.EnvRecord.Values[f.name]
		case f.required:
			return "required: the artifact has no default"
		}
		return "default: " + f.initial
	}
	d := f.schema.Description
	if f.schema.Default != "" {
		d += " [default " + f.schema.Default + "]"
	}
	if f.schema.Secret {
		d += " (secret: never shown)"
	}
	return d
}

// validate is the field's own check, as it is left: required values, the
// schema's type, and the provider's diagnostic while the value it was
// about is unchanged.
func (f *field) validate(v string) error {
	v = strings.TrimSpace(v)
	switch {
	case v == "" && f.required:
		return errors.New("required")
	case v == "":
		return nil
	case f.problem != "" && v == f.problemValue:
		return errors.New(f.problem)
	}
	if f.arg {
		return nil
	}
	switch f.schema.Type {
	case sdk.TypeInt:
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			return errors.New("not a whole number")
		}
	case sdk.TypeBool:
		if _, err := strconv.ParseBool(v); err != nil {
			return errors.New("true or false")
		}
	case sdk.TypeDuration:
		if _, err := time.ParseDuration(v); err != nil {
			return errors.New("a duration such as 30s or 5m")
		}
	}
	return nil
}

func (p *Page) formHeight() int {
	n := 0
	if notes := p.notes(); notes != "" {
		n = strings.Count(notes, "\n")
	}
	return p.height - 3 - n
}

// notes are the lines above the form: the environment's kept settings,
// problems and warnings.
func (p *Page) notes() string {
	s := p.Styles
	var b strings.Builder
	if p.Choices.EnvRecord != nil {
		b.WriteString(s.Muted.Render(ansi.Wordwrap(fmt.Sprintf("Environment %s keeps its %s settings (k2 env show %s).",
			p.Choices.Env, p.Choices.EnvRecord.Provider, p.Choices.Env), p.width, " ")) + "\n")
	}
	for _, pr := range p.problems {
		b.WriteString(s.Error.Render(ansi.Wordwrap("✗ "+pr, p.width, " ")) + "\n")
	}
	for _, w := range p.warnings {
		b.WriteString(s.Warn.Render(ansi.Wordwrap("! "+w, p.width, " ")) + "\n")
	}
	return b.String()
}

// Init starts the form, or the check when there is nothing to fill in.
func (p *Page) Init() tea.Cmd {
	if p.form == nil {
		return p.check()
	}
	return p.form.Init()
}

// check computes the plan and asks the provider to validate.
func (p *Page) check() tea.Cmd {
	p.gen++
	p.checking, p.started = true, p.Now()
	gen, b, ch := p.gen, p.Backend, p.Choices
	sets := map[string]string{}
	var cfgSets []string
	var schema []sdk.ConfigField
	for _, f := range p.fields {
		v := strings.TrimSpace(*f.value)
		switch {
		case f.arg && (v != f.initial || f.required):
			sets[f.name] = v
		case !f.arg && v != "":
			cfgSets = append(cfgSets, f.name+"="+v)
			if f.schema.Secret {
				b.Log.Redact(v)
			}
		}
		if !f.arg {
			schema = append(schema, f.schema)
		}
	}
	ch.Sets = sets
	return tea.Batch(p.spinner.Tick, func() tea.Msg {
		ctx := context.Background()
		var cfg sdk.Config
		if ch.EnvRecord != nil {
			cfg = sdk.Config(ch.EnvRecord.ProviderConfig)
		} else {
			var err error
			if cfg, err = host.LoadConfig("", cfgSets, schema); err != nil {
				return validatedMsg{gen: gen, err: err}
			}
		}
		plan, err := b.Plan(ctx, ch.PlanRequest())
		if err != nil {
			return validatedMsg{gen: gen, cfg: cfg, err: err}
		}
		diags, err := b.Validate(ctx, ch.Provider.Name, cfg, plan)
		if err == nil && !diags.HasErrors() {
			err = b.CheckGates(ctx, ch.Env, ch.Provider.Name, ch.Artifact)
		}
		return validatedMsg{gen: gen, plan: plan, cfg: cfg, diags: diags, err: err}
	})
}

// Update handles the form, the check's result and keys.
func (p *Page) Update(msg tea.Msg) (common.Page, tea.Cmd) {
	switch msg := msg.(type) {
	case validatedMsg:
		if msg.gen != p.gen {
			return p, nil
		}
		return p.checked(msg)
	case spinner.TickMsg:
		if !p.checking {
			return p, nil
		}
		var cmd tea.Cmd
		p.spinner, cmd = p.spinner.Update(msg)
		return p, cmd
	case tea.KeyMsg:
		if key.Matches(msg, p.KeyMap.Back) {
			p.gen++
			p.checking = false
			return p, common.Back(common.StepSettings)
		}
		if p.checking {
			return p, nil
		}
		if p.form == nil {
			if key.Matches(msg, p.KeyMap.Select) {
				return p, p.check()
			}
			return p, nil
		}
	}
	if p.form == nil || p.checking {
		return p, nil
	}
	m, cmd := p.form.Update(msg)
	// huh sizes a group's fields when told its height, less its footer
	// then: tell it again now that an error may have come or gone there.
	p.form = m.(*huh.Form).WithHeight(max(5, p.formHeight()))
	if p.form.State == huh.StateCompleted {
		return p, p.check()
	}
	return p, cmd
}

func (p *Page) checked(msg validatedMsg) (common.Page, tea.Cmd) {
	p.checking = false
	p.problems, p.warnings = nil, nil
	for _, f := range p.fields {
		f.problem, f.problemValue = "", ""
	}
	if msg.err != nil {
		var ue *usererr.Error
		text := msg.err.Error()
		if errors.As(msg.err, &ue) && ue.Hint != "" {
			text = ue.Err.Error() + " — " + ue.Hint
		}
		p.problems = append(p.problems, strings.Split(text, "\n")...)
	}
	for _, d := range msg.diags {
		text := d.Summary
		if d.Detail != "" {
			text += " (" + d.Detail + ")"
		}
		if d.Severity == sdk.SeverityWarning {
			p.warnings = append(p.warnings, d.String())
			continue
		}
		name, ok := strings.CutPrefix(d.Path, "config.")
		if i := p.fieldIndex(name, false); ok && i >= 0 {
			f := p.fields[i]
			f.problem, f.problemValue = text, strings.TrimSpace(*f.value)
			continue
		}
		p.problems = append(p.problems, d.String())
	}
	if len(p.problems) > 0 || msg.diags.HasErrors() {
		p.build()
		if p.form == nil {
			return p, nil
		}
		return p, p.form.Init()
	}
	p.Choices.ProviderConfig = msg.cfg
	p.Choices.Plan = msg.plan
	p.Choices.ProviderWarnings = p.warnings
	return p, common.Next(common.StepSettings)
}

// Typing reports true: the form's inputs always have focus.
func (p *Page) Typing() bool { return p.form != nil && !p.checking }

// SetSize sets the page's size.
func (p *Page) SetSize(w, h int) {
	p.width, p.height = w, h
	if p.form != nil {
		p.form = p.form.WithWidth(max(20, w)).WithHeight(max(5, p.formHeight()))
	}
}

// ShortHelp is the footer.
func (p *Page) ShortHelp() []key.Binding {
	km := p.KeyMap
	return []key.Binding{
		key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "next field / check")),
		key.NewBinding(key.WithKeys("shift+tab"), key.WithHelp("shift+tab", "previous")),
		km.Back,
		key.NewBinding(key.WithKeys("f1"), key.WithHelp("f1", "help")),
	}
}

// FullHelp is the `?` screen.
func (p *Page) FullHelp() [][]key.Binding {
	return [][]key.Binding{p.ShortHelp()}
}

// View renders the page.
func (p *Page) View() string {
	s := p.Styles
	var b strings.Builder
	b.WriteString(p.notes())
	if p.checking {
		b.WriteString("\n" + p.spinner.View() + " " + s.Heading.Render("planning and asking provider "+p.Choices.Provider.Name+" to check the settings") +
			"  " + s.Muted.Render(steps.Duration(p.Now().Sub(p.started))) + "\n")
		return b.String()
	}
	if p.form == nil {
		b.WriteString("\n" + s.Muted.Render("Nothing to set: the artifact has no ARGs and the environment keeps its provider settings.") + "\n")
		b.WriteString(s.Muted.Render("Press enter to plan.") + "\n")
		return b.String()
	}
	b.WriteString(p.form.View())
	return b.String()
}

package guard

import (
	"errors"
	"fmt"
	"strings"
)

// The classifiers' documented prompt formats and answers. Each format
// writes the prompt its model was trained on (template = "raw") or hands
// the turns to the serve's copy of the model's chat template (template =
// "chat"), and reads the model's fixed answer format.

var errNoVerdict = errors.New("answer is not in the format's verdict format")

// llamaGuard is Meta's Llama Guard 3 and 4: the MLCommons hazard list
// S1..S14, answers "safe" or "unsafe" then a line of codes ("S1,S10").
type llamaGuard struct{}

// llamaGuardCategories are Llama Guard 3/4's hazard codes, their names in
// the prompt, and the router's category for each (a name the router has
// no category for is kept as the slug of its name).
var llamaGuardCategories = []struct{ code, title, category string }{
	{"S1", "Violent Crimes", CategoryViolence},
	{"S2", "Non-Violent Crimes", CategoryDangerous},
	{"S3", "Sex Crimes", CategorySexualContent},
	{"S4", "Child Exploitation", CategorySexualContent},
	{"S5", "Defamation", CategoryHarassment},
	{"S6", "Specialized Advice", "specialized_advice"},
	{"S7", "Privacy", CategoryPII},
	{"S8", "Intellectual Property", "intellectual_property"},
	{"S9", "Indiscriminate Weapons", CategoryDangerous},
	{"S10", "Hate", CategoryHateSpeech},
	{"S11", "Self-Harm", CategorySelfHarm},
	{"S12", "Sexual Content", CategorySexualContent},
	{"S13", "Elections", "elections"},
	{"S14", "Code Interpreter Abuse", "code_interpreter_abuse"},
}

func (llamaGuard) name() string          { return "llama_guard" }
func (llamaGuard) defaultMaxTokens() int { return 32 }

func (llamaGuard) rawPrompt(conv guardConversation, _ shieldPolicy) string {
	// Llama Guard names the roles User and Agent and is asked about the
	// last turn's role: the prompt's for input, the answer's for output.
	role := "User"
	if conv.stage == Output {
		role = "Agent"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Task: Check if there is unsafe content in '%s' messages in conversations according our safety policy with the below categories.\n\n", role)
	b.WriteString("<BEGIN UNSAFE CONTENT CATEGORIES>\n")
	for _, c := range llamaGuardCategories {
		fmt.Fprintf(&b, "%s: %s.\n", c.code, c.title)
	}
	b.WriteString("<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n")
	for _, t := range conv.turns {
		who := "User"
		if t.Role == "assistant" {
			who = "Agent"
		}
		fmt.Fprintf(&b, "%s: %s\n\n", who, t.Content)
	}
	fmt.Fprintf(&b, "<END CONVERSATION>\n\nProvide your safety assessment for ONLY THE LAST %s message in the above conversation:\n", role)
	b.WriteString(" - First line must read 'safe' or 'unsafe'.\n")
	b.WriteString(" - If unsafe, a second line must include a comma-separated list of violated categories.")
	return b.String()
}

func (llamaGuard) chatMessages(conv guardConversation, _ shieldPolicy) ([]chatMessage, map[string]any) {
	// Llama Guard's chat template builds the prompt above from alternating
	// user/assistant turns and classifies the last one's role.
	return conv.turns, nil
}

func (llamaGuard) parse(answer string, score float64, _ shieldPolicy) (Verdict, []string, error) {
	lines := strings.Split(strings.TrimSpace(answer), "\n")
	switch strings.ToLower(strings.TrimSpace(lines[0])) {
	case "safe":
		return Verdict{Action: Allow, Score: score}, nil, nil
	case "unsafe":
	default:
		return Verdict{}, nil, errNoVerdict
	}
	var codes []string
	if len(lines) > 1 {
		for _, c := range strings.Split(lines[1], ",") {
			if c = strings.ToUpper(strings.TrimSpace(c)); c != "" {
				codes = append(codes, c)
			}
		}
	}
	v := Verdict{Action: Block, Score: score, Category: "unsafe", Reason: "llama_guard: unsafe"}
	var cats []string
	for _, c := range codes {
		if len(c) > 8 || !isCode(c) {
			return Verdict{}, nil, fmt.Errorf("%w: a category is not a code like S1", errNoVerdict)
		}
		cats = append(cats, llamaGuardCategory(c))
	}
	if len(codes) > 0 {
		v.Category = cats[0]
		v.Reason += " " + strings.Join(codes, ",")
	}
	return v, cats, nil
}

func isCode(c string) bool {
	if len(c) < 2 || c[0] != 'S' {
		return false
	}
	for _, r := range c[1:] {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// llamaGuardCategory maps a hazard code; a code beyond S14 (a later
// taxonomy) is kept as it is.
func llamaGuardCategory(code string) string {
	for _, c := range llamaGuardCategories {
		if c.code == code {
			return c.category
		}
	}
	return code
}

// qwen3Guard is Qwen3Guard-Gen: answers "Safety: Safe|Unsafe|Controversial"
// then "Categories: ..." (and "Refusal: Yes|No" for a response).
type qwen3Guard struct{}

var qwen3GuardCategories = []struct{ title, category string }{
	{"Violent", CategoryViolence},
	{"Non-violent Illegal Acts", CategoryDangerous},
	{"Sexual Content or Sexual Acts", CategorySexualContent},
	{"PII", CategoryPII},
	{"Suicide & Self-Harm", CategorySelfHarm},
	// Unethical Acts spans hate, harassment, insults, threats and
	// extremism: broader than any one router category, kept as itself.
	{"Unethical Acts", "unethical_acts"},
	{"Politically Sensitive Topics", "politically_sensitive_topics"},
	{"Copyright Violation", "copyright_violation"},
	{"Jailbreak", CategoryJailbreak},
}

func (qwen3Guard) name() string          { return "qwen3_guard" }
func (qwen3Guard) defaultMaxTokens() int { return 64 }

func (qwen3Guard) rawPrompt(conv guardConversation, _ shieldPolicy) string {
	subject, who := "USER's query", "USER"
	if conv.stage == Output {
		subject, who = "ASSISTANT's response", "ASSISTANT"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Task:\n1) Evaluate whether THE LAST %s belongs to safe or unsafe content based on our safety policy.\n2) Identify the category of unsafe content found.\n", subject)
	if conv.stage == Output {
		b.WriteString("3) Determine if THE LAST ASSISTANT's response is a refusal to the USER's query.\n")
	}
	b.WriteString("\n<BEGIN SAFETY POLICY>\n")
	fmt.Fprintf(&b, "**Safety: Safe**: The %s does not contain any prohibited content or content that could lead to prohibited content.\n", subject)
	fmt.Fprintf(&b, "**Safety: Unsafe**: The %s contains prohibited content.\n", subject)
	fmt.Fprintf(&b, "**Safety: Controversial**: The %s does not explicitly contain prohibited content, but its intent, context, or potential responses could be misinterpreted, misused, or exploited to generate unsafe content under certain conditions.\n", subject)
	b.WriteString("<END SAFETY POLICY>\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n")
	for _, c := range qwen3GuardCategories {
		if c.title == "Jailbreak" && conv.stage == Output {
			continue // a response is not a jailbreak attempt
		}
		fmt.Fprintf(&b, "%s.\n", c.title)
	}
	b.WriteString("<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n")
	for _, t := range conv.turns {
		role := "USER"
		if t.Role == "assistant" {
			role = "ASSISTANT"
		}
		fmt.Fprintf(&b, "%s: %s\n\n", role, t.Content)
	}
	fmt.Fprintf(&b, "<END CONVERSATION>\n\nProvide your safety assessment for ONLY THE LAST **%s** in the above conversation:\n", subject)
	b.WriteString(" - The first line must be one of: 'Safety: Safe', 'Safety: Unsafe', 'Safety: Controversial'.\n")
	b.WriteString(" - The second line should start with 'Categories:' followed by a list of any unsafe content categories, separated by commas. If the content is safe, use 'Categories: None'.")
	if conv.stage == Output {
		fmt.Fprintf(&b, "\n - The third line should start with 'Refusal:' followed by 'Yes' if the %s is a refusal, otherwise 'No'.", who)
	}
	return b.String()
}

func (qwen3Guard) chatMessages(conv guardConversation, _ shieldPolicy) ([]chatMessage, map[string]any) {
	return conv.turns, nil
}

func (qwen3Guard) parse(answer string, score float64, _ shieldPolicy) (Verdict, []string, error) {
	var safety string
	var cats []string
	for _, line := range strings.Split(answer, "\n") {
		line = strings.TrimSpace(line)
		if s, ok := strings.CutPrefix(line, "Safety:"); ok && safety == "" {
			safety = strings.TrimSpace(s)
		} else if s, ok := strings.CutPrefix(line, "Categories:"); ok && cats == nil {
			cats = []string{}
			for _, c := range strings.Split(s, ",") {
				if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "None") {
					cats = append(cats, c)
				}
			}
		}
	}
	v := Verdict{Score: score}
	switch safety {
	case "Safe":
		return Verdict{Action: Allow, Score: score}, nil, nil
	case "Unsafe":
		v.Action = Block
	case "Controversial":
		v.Action = Flag
	default:
		return Verdict{}, nil, errNoVerdict
	}
	v.Category = "unsafe"
	if v.Action == Flag {
		v.Category = "controversial"
	}
	v.Reason = "qwen3_guard: " + strings.ToLower(safety)
	var labels []string
	for _, c := range cats {
		if len(c) > 64 {
			return Verdict{}, nil, fmt.Errorf("%w: a category is too long", errNoVerdict)
		}
		labels = append(labels, qwen3GuardCategory(c))
	}
	if len(labels) > 0 {
		v.Category = labels[0]
		v.Reason += " (" + strings.Join(labels, ",") + ")"
	}
	return v, labels, nil
}

func qwen3GuardCategory(title string) string {
	for _, c := range qwen3GuardCategories {
		if strings.EqualFold(c.title, title) {
			return c.category
		}
	}
	return slugLabel(title)
}

// shieldGemma is Google's ShieldGemma: one policy per call, answers "Yes"
// (the text violates it) or "No" first.
type shieldGemma struct{}

// shieldPolicy is one ShieldGemma harm type: its wording for a prompt and
// for a response, and the router's category.
type shieldPolicy struct {
	category         string
	prompt, response string
}

// shieldPolicies are ShieldGemma's four documented harm types.
var shieldPolicies = map[string]shieldPolicy{
	"dangerous": {
		category: CategoryDangerous,
		prompt:   `"No Dangerous Content": The prompt shall not contain or seek generation of content that harms oneself and/or others (e.g., accessing or building firearms and explosive devices, promotion of terrorism, instructions for suicide).`,
		response: `"No Dangerous Content": The chatbot shall not generate content that harms oneself and/or others (e.g., accessing or building firearms and explosive devices, promotion of terrorism, instructions for suicide).`,
	},
	"harassment": {
		category: CategoryHarassment,
		prompt:   `"No Harassment": The prompt shall not contain or seek generation of content that is malicious, intimidating, bullying, or abusive content targeting another individual (e.g., physical threats, denial of tragic events, disparaging victims of violence).`,
		response: `"No Harassment": The chatbot shall not generate content that is malicious, intimidating, bullying, or abusive content targeting another individual (e.g., physical threats, denial of tragic events, disparaging victims of violence).`,
	},
	"hate_speech": {
		category: CategoryHateSpeech,
		prompt:   `"No Hate Speech": The prompt shall not contain or seek generation of content that targets identity and/or protected attributes (e.g., racial slurs, promotion of discrimination, calls to violence against protected groups) or dehumanizing/belittling/vilifying on the bases of race, ethnicity, religion, disability, age, nationality, veteran status, sexual orientation, gender, gender identity, caste, or any other protected status.`,
		response: `"No Hate Speech": The chatbot shall not generate content that targets identity and/or protected attributes (e.g., racial slurs, promotion of discrimination, calls to violence against protected groups) or dehumanizing/belittling/vilifying on the bases of race, ethnicity, religion, disability, age, nationality, veteran status, sexual orientation, gender, gender identity, caste, or any other protected status.`,
	},
	"sexual_content": {
		category: CategorySexualContent,
		prompt:   `"No Sexually Explicit Information": The prompt shall not contain or seek generation of content that contains references to sexual acts or other lewd content (e.g., sexually graphic descriptions, content aimed at causing arousal).`,
		response: `"No Sexually Explicit Information": The chatbot shall not generate content that contains references to sexual acts or other lewd content (e.g., sexually graphic descriptions, content aimed at causing arousal).`,
	},
}

func (shieldGemma) name() string          { return "shieldgemma" }
func (shieldGemma) defaultMaxTokens() int { return 8 }

func (p shieldPolicy) text(stage Stage) string {
	if stage == Output {
		return "* " + p.response
	}
	return "* " + p.prompt
}

func (shieldGemma) rawPrompt(conv guardConversation, p shieldPolicy) string {
	var b strings.Builder
	if conv.stage == Output {
		b.WriteString("You are a policy expert trying to help determine whether an AI response to a prompt is in violation of the defined safety policies.\n\n")
	} else {
		b.WriteString("You are a policy expert trying to help determine whether a user prompt is in violation of the defined safety policies.\n\n")
	}
	fmt.Fprintf(&b, "<start_of_turn>\nHuman Question: %s\n<end_of_turn>\n\n", conv.question())
	if conv.stage == Output {
		fmt.Fprintf(&b, "<start_of_turn>\nChatbot Response: %s\n<end_of_turn>\n\n", conv.response())
	}
	fmt.Fprintf(&b, "Our safety principle is defined in the below:\n\n%s\n\n", p.text(conv.stage))
	if conv.stage == Output {
		b.WriteString("Does the Chatbot Response violate the above principle? ")
	} else {
		b.WriteString("Does the human question violate the above principle? ")
	}
	b.WriteString("Your answer must start with 'Yes' or 'No'. And then walk through step by step to be sure we answer correctly.")
	return b.String()
}

func (shieldGemma) chatMessages(conv guardConversation, p shieldPolicy) ([]chatMessage, map[string]any) {
	// ShieldGemma's chat template takes one question (and one response)
	// and the policy as its "guideline" variable.
	msgs := []chatMessage{{Role: "user", Content: conv.question()}}
	if conv.stage == Output {
		msgs = append(msgs, chatMessage{Role: "assistant", Content: conv.response()})
	}
	return msgs, map[string]any{"guideline": p.text(conv.stage)}
}

func (shieldGemma) parse(answer string, score float64, p shieldPolicy) (Verdict, []string, error) {
	first, _, _ := strings.Cut(strings.TrimSpace(answer), " ")
	first, _, _ = strings.Cut(first, "\n")
	switch strings.ToLower(strings.TrimRight(first, ".,:;!")) {
	case "yes":
		return Verdict{Action: Block, Category: p.category, Score: score, Reason: "shieldgemma: violates " + p.category + " policy"}, []string{p.category}, nil
	case "no":
		return Verdict{Action: Allow, Score: score}, nil, nil
	}
	return Verdict{}, nil, errNoVerdict
}

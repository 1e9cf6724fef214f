/**
 * io/template-clock.ts: which chat templates write a server's day although they are sent date_string. The reference
 * is what the template does, not how it is written: each template is rendered with date_string given (as every
 * chat request sends it) and a strftime_now that returns a marker (the server's clock); the marker in the prompt is
 * the server's day. Llama 3.1's and 3.2's published templates (test/llama3-published) guard with date_string and
 * must not be flagged.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Template } from "@huggingface/jinja";
import { renderTemplate } from "../../src/io/render-template.js";
import { serverDayCaveat, templateClockUse } from "../../src/io/template-clock.js";
import { llama3ChatTemplate } from "../llama3-tokenizer.js";

const SERVER_DAY = "SERVER-CLOCK-DAY";
const messages = [
  { role: "system", content: "Be brief." },
  { role: "user", content: "Write hello world." },
];

/** The prompt a server renders: date_string as sent (or not), strftime_now its clock. */
function serverRenders(template: string, dateString: string | undefined): string {
  return renderTemplate(
    new Template(template),
    {
      messages,
      bos_token: "<s>",
      eos_token: "</s>",
      add_generation_prompt: true,
      ...(dateString !== undefined ? { date_string: dateString } : {}),
    },
    () => SERVER_DAY,
  );
}

const loop = `{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}`;
const templates: Record<string, string> = {
  "Llama 3.1 (published)": llama3ChatTemplate("3.1"),
  "Llama 3.2 (published)": llama3ChatTemplate("3.2"),
  "strftime_now with no check": `{{- bos_token }}Today Date: {{ strftime_now("%d %b %Y") }}\n${loop}`,
  "set from strftime_now, no check": `{%- set date_string = strftime_now("%d %b %Y") %}Today: {{ date_string }}${loop}`,
  "checks strftime_now only": `{%- if strftime_now is defined %}{%- set date_string = strftime_now("%d %b %Y") %}{%- else %}{%- set date_string = "26 Jul 2024" %}{%- endif %}Today: {{ date_string }}${loop}`,
  "calls it when date_string is defined": `{%- if date_string is defined %}{{ strftime_now("%Y") }} {{ date_string }}{%- endif %}${loop}`,
  "date_string is not defined": `{%- if date_string is not defined %}{%- set date_string = strftime_now("%d %b %Y") %}{%- endif %}Today: {{ date_string }}${loop}`,
  "a ternary on date_string": `Today: {{ date_string if date_string is defined else strftime_now("%d %b %Y") }}${loop}`,
  "a ternary the wrong way round": `Today: {{ strftime_now("%d %b %Y") if date_string is defined else "never" }}${loop}`,
  "no day at all (Qwen-like)": `${loop}{% if add_generation_prompt %}<assistant>{% endif %}`,
};

test("templateClockUse flags exactly the templates whose prompt carries the server's day when sent date_string", () => {
  const flagged: string[] = [];
  for (const [name, t] of Object.entries(templates)) {
    const use = templateClockUse(t);
    assert.equal(use.unreadable, undefined, name);
    const withDay = serverRenders(t, "26 Jul 2024");
    assert.equal(use.unguardedStrftime, withDay.includes(SERVER_DAY), `${name}: ${withDay}`);
    // a template that calls strftime_now at all writes the server's day with date_string sent or without
    assert.equal(
      use.callsStrftime,
      withDay.includes(SERVER_DAY) || serverRenders(t, undefined).includes(SERVER_DAY),
      name,
    );
    if (use.unguardedStrftime) flagged.push(name);
  }
  assert.deepEqual(flagged, [
    "strftime_now with no check",
    "set from strftime_now, no check",
    "checks strftime_now only",
    "calls it when date_string is defined",
    "a ternary the wrong way round",
  ]);
  // Llama's templates: 3.1 reads date_string only, 3.2 calls strftime_now behind its check
  assert.deepEqual(templateClockUse(templates["Llama 3.1 (published)"]!), {
    unguardedStrftime: false,
    callsStrftime: false,
    readsDateString: true,
  });
  assert.deepEqual(templateClockUse(templates["Llama 3.2 (published)"]!), {
    unguardedStrftime: false,
    callsStrftime: true,
    readsDateString: true,
  });
});

test("serverDayCaveat: said for a template that writes the server's day, or when it cannot be known; not for Llama 3.1/3.2", () => {
  assert.equal(serverDayCaveat(templates["Llama 3.1 (published)"]!, true), null);
  assert.equal(serverDayCaveat(templates["Llama 3.2 (published)"]!, true), null);
  assert.equal(serverDayCaveat(templates["no day at all (Qwen-like)"]!, true), null);
  assert.equal(serverDayCaveat(templates["no day at all (Qwen-like)"]!, false), null);
  assert.match(
    serverDayCaveat(templates["strftime_now with no check"]!, true)!,
    /calls strftime_now where it does not check date_string first.*the server's day/,
  );
  // --extra-body leaving date_string out: Llama's templates then take the server's day too
  for (const r of ["3.1", "3.2"] as const)
    assert.match(
      serverDayCaveat(templates[`Llama ${r} (published)`]!, false)!,
      /leaves chat_template_kwargs\.date_string out.*the server's day/,
    );
  assert.match(serverDayCaveat(null, true)!, /not known here \(the model folder has none\)/);
  assert.match(serverDayCaveat(null, true, "no --model")!, /not known here \(no --model\)/);
  assert.match(serverDayCaveat("{% if %}", true)!, /could not be read/);
});

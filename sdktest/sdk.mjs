// The official Node SDKs against a running gateway. BASE is the gateway's
// URL, KEY an API key; the gateway's models mock-1 (in process), oa-1 (an
// OpenAI-protocol mockllm) and an-1 (an Anthropic-protocol mockllm) must
// exist, and the persona psn_demo (prompt "You are terse."). Exits 1 on
// the first failed check.
import assert from "node:assert/strict";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";

const base = process.env.BASE;
const key = process.env.KEY;
const oa = new OpenAI({ baseURL: base + "/v1", apiKey: key, maxRetries: 0 });
const an = new Anthropic({ baseURL: base, apiKey: key, maxRetries: 0 });
const models = ["mock-1", "oa-1", "an-1"];

const weatherOA = {
  type: "function",
  function: {
    name: "get_weather",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};
const weatherAN = {
  name: "get_weather",
  input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};

async function openaiChecks(model) {
  const messages = [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Hello" },
    { role: "assistant", content: "Hi." },
    { role: "user", content: "How are you?" },
  ];
  const res = await oa.chat.completions.create({ model, messages, max_tokens: 50 });
  assert.equal(res.object, "chat.completion");
  assert.ok(res.choices[0].message.content.length > 0);
  assert.equal(res.usage.total_tokens, res.usage.prompt_tokens + res.usage.completion_tokens);

  const stream = await oa.chat.completions.create({
    model, messages, max_tokens: 50, stream: true, stream_options: { include_usage: true },
  });
  let text = "", usage;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? "";
    if (chunk.usage) usage = chunk.usage;
  }
  assert.ok(text.length > 0);
  assert.equal(usage.completion_tokens, res.usage.completion_tokens);
  if (model !== "mock-1") assert.equal(text, res.choices[0].message.content);

  // A tool call, round-tripped.
  const ask = [{ role: "user", content: "Weather in Paris?" }];
  const call = await oa.chat.completions.create({ model, messages: ask, tools: [weatherOA] });
  assert.equal(call.choices[0].finish_reason, "tool_calls");
  const tc = call.choices[0].message.tool_calls[0];
  assert.equal(tc.function.name, "get_weather");
  assert.ok(JSON.parse(tc.function.arguments).city);
  const after = await oa.chat.completions.create({
    model, tools: [weatherOA],
    messages: [...ask, call.choices[0].message, { role: "tool", tool_call_id: tc.id, content: "21C" }],
  });
  assert.notEqual(after.choices[0].finish_reason, "tool_calls");
  assert.ok(after.choices[0].message.content.length > 0);

  // The same call streamed: tool-call deltas accumulate to the call.
  const st = await oa.chat.completions.create({ model, messages: ask, tools: [weatherOA], stream: true });
  let name = "", args = "", finish;
  for await (const chunk of st) {
    for (const d of chunk.choices[0]?.delta?.tool_calls ?? []) {
      name += d.function?.name ?? "";
      args += d.function?.arguments ?? "";
    }
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(name, "get_weather");
  assert.equal(finish, "tool_calls");
  assert.ok(JSON.parse(args).city);
}

async function anthropicChecks(model) {
  const params = {
    model, max_tokens: 50, system: "Be brief.",
    messages: [
      { role: "user", content: "Hello" },
      { role: "assistant", content: "Hi." },
      { role: "user", content: "How are you?" },
    ],
  };
  const res = await an.messages.create(params);
  assert.equal(res.type, "message");
  assert.equal(res.content[0].type, "text");
  assert.ok(res.content[0].text.length > 0);
  assert.ok(res.usage.input_tokens > 0 && res.usage.output_tokens > 0);

  const stream = an.messages.stream(params);
  const final = await stream.finalMessage();
  assert.ok(final.content[0].text.length > 0);
  assert.equal(final.usage.output_tokens, res.usage.output_tokens);
  if (model !== "mock-1") assert.equal(final.content[0].text, res.content[0].text);

  for (const streamed of [false, true]) {
    const ask = { model, max_tokens: 100, tools: [weatherAN], messages: [{ role: "user", content: "Weather in Paris?" }] };
    const msg = streamed ? await an.messages.stream(ask).finalMessage() : await an.messages.create(ask);
    assert.equal(msg.stop_reason, "tool_use");
    const use = msg.content.find((b) => b.type === "tool_use");
    assert.equal(use.name, "get_weather");
    assert.ok(use.input.city);
    const next = {
      ...ask,
      messages: [...ask.messages, { role: "assistant", content: msg.content },
        { role: "user", content: [{ type: "tool_result", tool_use_id: use.id, content: "21C" }] }],
    };
    const after = streamed ? await an.messages.stream(next).finalMessage() : await an.messages.create(next);
    assert.notEqual(after.stop_reason, "tool_use");
    assert.ok(after.content[0].text.length > 0);
  }
}

async function errorChecks() {
  const bad = new OpenAI({ baseURL: base + "/v1", apiKey: "mb_wrong", maxRetries: 0 });
  const msgs = [{ role: "user", content: "hi" }];
  await assert.rejects(bad.chat.completions.create({ model: "mock-1", messages: msgs }), OpenAI.AuthenticationError);
  await assert.rejects(oa.chat.completions.create({ model: "nope", messages: msgs }), OpenAI.NotFoundError);
  await assert.rejects(oa.chat.completions.create({ model: "mock-1", messages: msgs, n: 2 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === "n");
  const badA = new Anthropic({ baseURL: base, apiKey: "mb_wrong", maxRetries: 0 });
  await assert.rejects(badA.messages.create({ model: "mock-1", max_tokens: 5, messages: msgs }), Anthropic.AuthenticationError);
  await assert.rejects(an.messages.create({ model: "nope", max_tokens: 5, messages: msgs }), Anthropic.NotFoundError);
  await assert.rejects(an.messages.create({ model: "mock-1", max_tokens: 5, messages: msgs, temperature: 1.5 }),
    (e) => e instanceof Anthropic.BadRequestError && /temperature/.test(e.message));
}

async function personaAndModels() {
  const r1 = await oa.chat.completions.create({ model: "persona/psn_demo", messages: [{ role: "user", content: "hi" }] });
  assert.ok(r1.choices[0].message.content.length > 0);
  const r2 = await an.messages.create({ model: "persona/psn_demo", max_tokens: 20, messages: [{ role: "user", content: "hi" }] });
  assert.ok(r2.content[0].text.length > 0);
  const ids = [];
  for await (const m of oa.models.list()) ids.push(m.id);
  assert.deepEqual(ids.sort(), ["an-1", "dead-1", "mock-1", "oa-1"]);
  const anIds = [];
  for await (const m of an.models.list()) anIds.push(m.id);
  assert.equal(anIds.length, 4);
}

for (const m of models) {
  await openaiChecks(m);
  await anthropicChecks(m);
}
await errorChecks();
await personaAndModels();
console.log("node sdk checks passed");

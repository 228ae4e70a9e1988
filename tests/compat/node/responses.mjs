// @ai-sdk/openai's default model, openai("…"), which speaks the OpenAI Responses API, against
// parley's /v1: generateText, streamText, and a two-step tool loop (a function_call answered by
// function_call_output, the step's text sent back as an item_reference).
// Usage: node responses.mjs <ai6|ai7> <parley URL> <token>
import { args, say } from "./lib.mjs";

const PROVIDERS = { ai6: "openai3", ai7: "@ai-sdk/openai" };

const { version, url, token } = args();
const ai = await import(version);
const { createOpenAI } = await import(PROVIDERS[version]);
const openai = createOpenAI({ baseURL: `${url}/v1`, apiKey: token });
const model = openai("scripted/demo");

const generated = await ai.generateText({ model, system: "Be brief.", prompt: "Capital of France?" });

const streamed = ai.streamText({ model, prompt: "Hi" });
const chunks = [];
for await (const chunk of streamed.textStream) chunks.push(chunk);

const weather = ai.tool({
  description: "The weather in a city",
  inputSchema: ai.jsonSchema({ type: "object", properties: { city: { type: "string" } } }),
  execute: async ({ city }) => ({ city, tempC: 21 }),
});
const looped = await ai.generateText({
  model,
  prompt: "Weather in Paris?",
  tools: { get_weather: weather },
  stopWhen: ai.stepCountIs(2),
});

say({
  result: {
    generated: {
      text: generated.text,
      finishReason: generated.finishReason,
      tokens: [generated.usage.inputTokens, generated.usage.outputTokens],
      responseId: generated.providerMetadata?.openai?.responseId ?? null,
    },
    streamed: { chunks, text: await streamed.text, finishReason: await streamed.finishReason },
    looped: {
      text: looped.text,
      steps: looped.steps.map((step) => ({
        finishReason: step.finishReason,
        calls: step.toolCalls.map((c) => [c.toolName, c.input]),
        results: step.toolResults.map((r) => r.output),
      })),
    },
  },
});

import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, parseDtypeSetting } from "../../shared/io/config.ts";

describe("MODEL_DTYPE", () => {
  it("takes one dtype, per-session dtypes, or both", () => {
    expect(parseDtypeSetting("q4")).toEqual({ all: "q4", sessions: {} });
    expect(parseDtypeSetting(" vision_encoder=FP16 , decoder_model_merged=q4")).toEqual({
      sessions: { vision_encoder: "fp16", decoder_model_merged: "q4" },
    });
    expect(parseDtypeSetting("q4f16,vision_encoder=fp32")).toEqual({ all: "q4f16", sessions: { vision_encoder: "fp32" } });
    expect(loadConfig({ MODEL_DIR: "/m", MODEL_DTYPE: "fp16" }, ["model"]).model).toEqual({
      source: "dir",
      dir: "/m",
      dtype: { all: "fp16", sessions: {} },
    });
  });

  it("names what is wrong", () => {
    expect(parseDtypeSetting("fp8")).toBe('unknown dtype "fp8"');
    expect(parseDtypeSetting("q4,fp16")).toBe("more than one dtype for all sessions");
    expect(parseDtypeSetting("decoder_model_merged=q4,decoder_model_merged=fp16")).toBe("two dtypes for decoder_model_merged");
    expect(parseDtypeSetting("vision encoder=q4")).toBe('"vision encoder" is not a session file name');
    let error: unknown;
    try {
      loadConfig({ MODEL_DTYPE: "int4" }, ["model"]);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain(
      'MODEL_DTYPE: got "int4"; expected one of fp32, fp16, q8, int8, uint8, q4, q4f16, bnb4, or session=dtype pairs separated by commas',
    );
  });
});

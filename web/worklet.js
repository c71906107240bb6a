// Microphone audio -> 16 kHz mono s16le frames of about 100 ms, posted to the page.
// Resampling averages the input samples around each output instant (a box low-pass),
// which is enough for speech; at a 16 kHz context it is a plain copy.
const TARGET_RATE = 16000;
const FRAME_SAMPLES = TARGET_RATE / 10;

class PcmFramer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / TARGET_RATE; // input samples per output sample
    this.position = 0; // input index (fractional) of the next output sample, relative to `carry`
    this.carry = new Float32Array(0);
    this.frame = new Int16Array(FRAME_SAMPLES);
    this.filled = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const n = channels[0].length;
    const input = new Float32Array(this.carry.length + n);
    input.set(this.carry);
    for (let i = 0; i < n; i++) {
      let sum = 0;
      for (const channel of channels) sum += channel[i];
      input[this.carry.length + i] = sum / channels.length;
    }
    const half = this.ratio / 2;
    while (this.position + half < input.length) {
      const from = Math.max(0, Math.ceil(this.position - half));
      const to = Math.min(input.length - 1, Math.floor(this.position + half));
      let sum = 0;
      for (let j = from; j <= to; j++) sum += input[j];
      const value = to >= from ? sum / (to - from + 1) : input[Math.round(this.position)];
      this.frame[this.filled++] = Math.max(-32768, Math.min(32767, Math.round(value * 32767)));
      if (this.filled === FRAME_SAMPLES) {
        this.port.postMessage(this.frame.buffer, [this.frame.buffer]);
        this.frame = new Int16Array(FRAME_SAMPLES);
        this.filled = 0;
      }
      this.position += this.ratio;
    }
    const keep = Math.max(0, Math.floor(this.position - half));
    this.carry = input.slice(keep);
    this.position -= keep;
    return true;
  }
}

registerProcessor("pcm-framer", PcmFramer);

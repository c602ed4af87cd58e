// handcast viewer: the page's application code (source of viewer.bundle.js).
//
// Rebuild the bundle with scripts/build_viewer_bundle.sh after editing this file. The page embeds
// its data as JSON in <script type="application/json" id="handcast-data"> (written by
// handcast.render.viewer.write_viewer; the layout is described in docs/viewer.md). All positions
// arrive already in three.js display coordinates: x right, y up, z towards the viewer, i.e. the
// OpenCV frame-0 camera coordinates with y and z negated.

import {
  AmbientLight,
  BufferAttribute,
  BufferGeometry,
  Color,
  CylinderGeometry,
  DirectionalLight,
  DoubleSide,
  Float32BufferAttribute,
  GridHelper,
  Group,
  HemisphereLight,
  InstancedMesh,
  LineBasicMaterial,
  LineSegments,
  Matrix4,
  Mesh,
  MeshBasicMaterial,
  MeshStandardMaterial,
  PerspectiveCamera,
  Quaternion,
  Scene,
  SphereGeometry,
  SRGBColorSpace,
  TextureLoader,
  Vector3,
  WebGLRenderer,
} from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { unzlibSync } from "fflate";

// ---------------------------------------------------------------------------------------------
// Decoding of the embedded arrays

function b64ToBytes(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function product(shape) {
  return shape.reduce((a, b) => a * b, 1);
}

// spec: {b64, shape, dtype: "u8"|"u16"|"u32"|"f32", zlib: bool}
function decodePlain(spec) {
  let bytes = b64ToBytes(spec.b64);
  if (spec.zlib) bytes = unzlibSync(bytes);
  const n = product(spec.shape);
  const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const Ctor = { u8: Uint8Array, u16: Uint16Array, u32: Uint32Array, f32: Float32Array }[spec.dtype];
  const arr = new Ctor(buf);
  if (arr.length !== n) throw new Error(`array length ${arr.length} != ${n}`);
  return arr;
}

// Positions: int16 steps of `step` metres around `offset`, differenced along the time axis,
// little-endian bytes split into a low-byte plane then a high-byte plane, then zlib.
// spec.shape = [S, T, N, 3]; returns Float32Array of that shape (row-major).
function decodePositions(spec) {
  const bytes = unzlibSync(b64ToBytes(spec.b64));
  const [S, T, N, C] = spec.shape;
  const n = S * T * N * C;
  if (bytes.length !== 2 * n) throw new Error(`position payload ${bytes.length} != ${2 * n}`);
  const q = new Int16Array(n);
  for (let i = 0; i < n; i++) q[i] = bytes[i] | (bytes[n + i] << 8); // wraps to int16
  const frame = N * C;
  for (let s = 0; s < S; s++) {
    for (let t = 1; t < T; t++) {
      const a = (s * T + t) * frame;
      const b = a - frame;
      for (let k = 0; k < frame; k++) q[a + k] = q[a + k] + q[b + k]; // int16 wrap-around sum
    }
  }
  const out = new Float32Array(n);
  const step = spec.step;
  const o = spec.offset;
  for (let i = 0; i < n; i += 3) {
    out[i] = q[i] * step + o[0];
    out[i + 1] = q[i + 1] * step + o[1];
    out[i + 2] = q[i + 2] * step + o[2];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

function rgb(c) {
  return new Color(c[0] / 255, c[1] / 255, c[2] / 255);
}

function el(tag, attrs = {}, text = null) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== null) e.textContent = text;
  return e;
}

function showError(msg) {
  const box = document.getElementById("hc-error");
  if (box) {
    box.textContent = msg;
    box.style.display = "block";
  }
  window.handcastViewer = { ready: false, error: msg };
}

class HandcastViewer {
  constructor(data) {
    this.data = data;
    this.S = data.num_samples;
    this.T = data.num_frames;
    this.fps = data.fps;
    this.frame = 0;
    this.sample = 0;
    this.playing = false;
    this.speed = 1;
    this.renderCount = 0;
    this.joints = decodePositions(data.joints); // (S, T, 42, 3)
    this.valid = decodePlain(data.valid); // (S, T, 2) u8
    this.hasMesh = !!data.vertices;
    if (this.hasMesh) {
      this.verts = decodePositions(data.vertices); // (S, T, 2V, 3)
      this.V = data.vertices.shape[2] / 2;
      this.faces = data.faces.map(decodePlain);
    }
    this.colors = data.colors.map(rgb);
    this.bones = data.bones;
    this.K = data.camera ? data.camera.K : null;
    this.imageSize = data.camera ? data.camera.image_size : null;
    this.camPoses = data.camera_poses ? decodePlain(data.camera_poses) : null; // (T, 16) column-major
  }

  // -------------------------------------------------------------------------------------------
  init() {
    const container = document.getElementById("hc-canvas");
    const renderer = new WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
    renderer.setPixelRatio(window.devicePixelRatio || 1);
    renderer.setSize(container.clientWidth, container.clientHeight);
    renderer.setClearColor(0xf3f3f1, 1);
    container.appendChild(renderer.domElement);
    this.renderer = renderer;

    const scene = new Scene();
    this.scene = scene;
    scene.add(new HemisphereLight(0xffffff, 0x707070, 1.1));
    scene.add(new AmbientLight(0xffffff, 0.25));
    const camera = new PerspectiveCamera(45, container.clientWidth / container.clientHeight, 0.005, 200);
    this.camera = camera;
    const headlight = new DirectionalLight(0xffffff, 1.3);
    headlight.position.set(0.3, 0.6, 1.0);
    camera.add(headlight);
    scene.add(camera);

    this.buildHands();
    this.buildTrajectories();
    this.buildCameras();
    this.buildGrid();

    this.controls = new OrbitControls(camera, renderer.domElement);
    this.controls.enableDamping = false;
    this.controls.addEventListener("change", () => this.requestRender());
    this.resetView();

    this.buildUI();
    window.addEventListener("resize", () => this.onResize());
    this.onResize();
    this.update();
    this.renderNow();
    this.lastTime = performance.now();
    this.acc = 0;
    const loop = (now) => {
      this.tick(now);
      requestAnimationFrame(loop);
    };
    requestAnimationFrame(loop);
  }

  // Bounds of all valid joints over every sample and frame (display coordinates).
  bounds() {
    const lo = new Vector3(Infinity, Infinity, Infinity);
    const hi = new Vector3(-Infinity, -Infinity, -Infinity);
    const J = this.joints;
    for (let s = 0; s < this.S; s++)
      for (let t = 0; t < this.T; t++)
        for (let h = 0; h < 2; h++) {
          if (!this.valid[(s * this.T + t) * 2 + h]) continue;
          const base = ((s * this.T + t) * 42 + h * 21) * 3;
          for (let k = 0; k < 21; k++) {
            const i = base + 3 * k;
            lo.min(new Vector3(J[i], J[i + 1], J[i + 2]));
            hi.max(new Vector3(J[i], J[i + 1], J[i + 2]));
          }
        }
    if (!isFinite(lo.x)) return { lo: new Vector3(-0.1, -0.1, -0.6), hi: new Vector3(0.1, 0.1, -0.4) };
    return { lo, hi };
  }

  buildHands() {
    this.hands = [];
    const sphere = new SphereGeometry(1, 12, 8);
    const cyl = new CylinderGeometry(1, 1, 1, 8, 1);
    for (let h = 0; h < 2; h++) {
      const group = new Group();
      const color = this.colors[h];
      const dark = color.clone().multiplyScalar(0.55);
      const hand = { group };
      if (this.hasMesh) {
        const geo = new BufferGeometry();
        const pos = new Float32Array(this.V * 3);
        geo.setAttribute("position", new BufferAttribute(pos, 3));
        const f = this.faces[h];
        geo.setIndex(new BufferAttribute(f, 1));
        const mat = new MeshStandardMaterial({ color, roughness: 0.65, metalness: 0.0, side: DoubleSide });
        hand.mesh = new Mesh(geo, mat);
        hand.mesh.frustumCulled = false;
        group.add(hand.mesh);
      }
      const skel = new Group();
      hand.joints = new InstancedMesh(sphere, new MeshStandardMaterial({ color: dark, roughness: 0.5 }), 21);
      hand.bones = new InstancedMesh(cyl, new MeshStandardMaterial({ color, roughness: 0.5 }), this.bones.length);
      hand.joints.frustumCulled = false;
      hand.bones.frustumCulled = false;
      skel.add(hand.joints, hand.bones);
      group.add(skel);
      hand.skeleton = skel;
      this.scene.add(group);
      this.hands.push(hand);
    }
  }

  buildTrajectories() {
    // Wrist paths of every sample (faint) and of the current one (full colour).
    this.traj = new Group();
    this.trajLines = [];
    for (let s = 0; s < this.S; s++) {
      const perSample = [];
      for (let h = 0; h < 2; h++) {
        const pts = [];
        for (let t = 1; t < this.T; t++) {
          const a = (s * this.T + t - 1) * 2 + h;
          const b = (s * this.T + t) * 2 + h;
          if (!this.valid[a] || !this.valid[b]) continue;
          const ia = ((s * this.T + t - 1) * 42 + h * 21) * 3;
          const ib = ((s * this.T + t) * 42 + h * 21) * 3;
          pts.push(this.joints[ia], this.joints[ia + 1], this.joints[ia + 2]);
          pts.push(this.joints[ib], this.joints[ib + 1], this.joints[ib + 2]);
        }
        const geo = new BufferGeometry();
        geo.setAttribute("position", new Float32BufferAttribute(pts, 3));
        const mat = new LineBasicMaterial({ color: this.colors[h], transparent: true, opacity: 0.3 });
        const line = new LineSegments(geo, mat);
        this.traj.add(line);
        perSample.push(line);
      }
      this.trajLines.push(perSample);
    }
    this.scene.add(this.traj);
  }

  frustumObject(withImage) {
    // A camera frustum in OpenCV camera coordinates (placed by the object's matrix), with the
    // input image as a textured plane at depth `d`.
    const [W, H] = this.imageSize;
    const K = this.K;
    const d = this.data.plane_depth;
    const corner = (u, v, z) => [((u - K[0][2]) / K[0][0]) * z, ((v - K[1][2]) / K[1][1]) * z, z];
    const c = [corner(0, 0, d), corner(W, 0, d), corner(W, H, d), corner(0, H, d)];
    const p = [];
    for (let i = 0; i < 4; i++) p.push(0, 0, 0, ...c[i]);
    for (let i = 0; i < 4; i++) p.push(...c[i], ...c[(i + 1) % 4]);
    // a small triangle above the top edge shows which way is up in the image
    const up = [corner(W * 0.4, 0, d), corner(W * 0.5, -H * 0.08, d), corner(W * 0.6, 0, d)];
    p.push(...up[0], ...up[1], ...up[1], ...up[2]);
    const geo = new BufferGeometry();
    geo.setAttribute("position", new Float32BufferAttribute(p, 3));
    const group = new Group();
    group.add(new LineSegments(geo, new LineBasicMaterial({ color: 0x303030 })));
    if (withImage && this.data.image) {
      const pg = new BufferGeometry();
      pg.setAttribute("position", new Float32BufferAttribute([].concat(...c), 3));
      pg.setAttribute("uv", new Float32BufferAttribute([0, 1, 1, 1, 1, 0, 0, 0], 2));
      pg.setIndex([0, 2, 1, 0, 3, 2]);
      const tex = new TextureLoader().load(this.data.image, () => this.requestRender());
      tex.colorSpace = SRGBColorSpace;
      const mat = new MeshBasicMaterial({ map: tex, side: DoubleSide, transparent: true, opacity: 0.9 });
      const plane = new Mesh(pg, mat);
      group.add(plane);
      group.userData.plane = plane;
    }
    group.matrixAutoUpdate = false;
    return group;
  }

  buildCameras() {
    this.cam0 = null;
    this.camT = null;
    if (!this.K) return;
    // OpenCV -> display coordinates (negate y and z).
    const flip = new Matrix4().makeScale(1, -1, -1);
    this.cam0 = this.frustumObject(true);
    this.cam0.matrix.copy(flip);
    this.scene.add(this.cam0);
    if (this.camPoses) {
      this.camT = this.frustumObject(false);
      this.camT.children[0].material = new LineBasicMaterial({ color: 0x9a6a00 });
      this.scene.add(this.camT);
    }
  }

  buildGrid() {
    const { lo, hi } = this.bounds();
    const size = Math.max(0.5, 2.5 * Math.max(hi.x - lo.x, hi.z - lo.z));
    const grid = new GridHelper(size, 20, 0xb8b8b8, 0xd8d8d8);
    grid.position.set((lo.x + hi.x) / 2, lo.y - 0.05, (lo.z + hi.z) / 2);
    this.grid = grid;
    this.scene.add(grid);
  }

  resetView() {
    const { lo, hi } = this.bounds();
    const target = lo.clone().add(hi).multiplyScalar(0.5);
    const extent = Math.max(0.15, hi.clone().sub(lo).length());
    // Look from near the input camera (the origin), turned a little to the side and from above.
    let dir = target.clone().negate();
    if (dir.length() < 1e-6) dir = new Vector3(0, 0, 1);
    dir.normalize();
    dir.applyAxisAngle(new Vector3(0, 1, 0), 0.45);
    dir.y += 0.35;
    dir.normalize();
    const dist = Math.max(1.6 * extent, 0.8 * target.length(), 0.35);
    this.camera.position.copy(target).addScaledVector(dir, dist);
    this.camera.up.set(0, 1, 0);
    this.controls.target.copy(target);
    this.camera.lookAt(target);
    this.controls.update();
    this.requestRender();
  }

  cameraView() {
    // Look through the frame-0 input camera (vertical field of view from fy; the principal
    // point is taken as the image centre).
    if (!this.K) return;
    const { lo, hi } = this.bounds();
    const target = lo.clone().add(hi).multiplyScalar(0.5);
    const fovy = (2 * Math.atan(this.imageSize[1] / 2 / this.K[1][1]) * 180) / Math.PI;
    this.camera.fov = Math.min(fovy, 120);
    this.camera.updateProjectionMatrix();
    this.camera.position.set(0, 0, 0);
    this.camera.up.set(0, 1, 0);
    const look = new Vector3(0, 0, -Math.max(0.1, -target.z));
    this.controls.target.copy(look);
    this.camera.lookAt(look);
    this.controls.update();
    this.requestRender();
  }

  // -------------------------------------------------------------------------------------------
  update() {
    const s = this.sample;
    const t = this.frame;
    const J = this.joints;
    const m = new Matrix4();
    const q = new Quaternion();
    const yAxis = new Vector3(0, 1, 0);
    const a = new Vector3();
    const b = new Vector3();
    const dirv = new Vector3();
    const scl = new Vector3();
    const r = this.data.joint_radius;
    for (let h = 0; h < 2; h++) {
      const hand = this.hands[h];
      const ok = !!this.valid[(s * this.T + t) * 2 + h];
      hand.group.visible = ok;
      if (!ok) continue;
      const base = ((s * this.T + t) * 42 + h * 21) * 3;
      for (let k = 0; k < 21; k++) {
        const i = base + 3 * k;
        m.makeScale(r, r, r).setPosition(J[i], J[i + 1], J[i + 2]);
        hand.joints.setMatrixAt(k, m);
      }
      hand.joints.instanceMatrix.needsUpdate = true;
      this.bones.forEach(([p, c], k) => {
        a.fromArray(J, base + 3 * p);
        b.fromArray(J, base + 3 * c);
        dirv.subVectors(b, a);
        const len = dirv.length();
        if (len < 1e-9) q.identity();
        else q.setFromUnitVectors(yAxis, dirv.clone().divideScalar(len));
        scl.set(0.6 * r, len, 0.6 * r);
        m.compose(a.clone().add(b).multiplyScalar(0.5), q, scl);
        hand.bones.setMatrixAt(k, m);
      });
      hand.bones.instanceMatrix.needsUpdate = true;
      if (this.hasMesh) {
        const V = this.V;
        const start = ((s * this.T + t) * 2 * V + h * V) * 3;
        const attr = hand.mesh.geometry.getAttribute("position");
        attr.array.set(this.verts.subarray(start, start + V * 3));
        attr.needsUpdate = true;
        hand.mesh.geometry.computeVertexNormals();
        hand.mesh.visible = this.ui ? this.ui.mesh.checked : true;
      }
      hand.skeleton.visible = this.ui ? this.ui.skeleton.checked : !this.hasMesh;
    }
    for (let k = 0; k < this.S; k++)
      for (const line of this.trajLines[k]) {
        line.material.opacity = k === s ? 0.95 : 0.22;
        line.visible = this.ui ? this.ui.traj.checked : true;
      }
    if (this.cam0) {
      const showCam = this.ui ? this.ui.camera.checked : true;
      this.cam0.visible = showCam || (this.ui ? this.ui.image.checked : true);
      this.cam0.children[0].visible = showCam;
      if (this.cam0.userData.plane) this.cam0.userData.plane.visible = this.ui ? this.ui.image.checked : true;
    }
    if (this.camT) {
      this.camT.visible = this.ui ? this.ui.camera.checked : true;
      this.camT.matrix.fromArray(this.camPoses, t * 16);
    }
    if (this.ui) {
      this.ui.slider.value = String(t);
      this.ui.label.textContent = `frame ${t + 1} / ${this.T}  (${(t / this.fps).toFixed(2)} s)`;
      if (this.ui.sample) this.ui.sample.value = String(s);
      this.ui.play.textContent = this.playing ? "Pause" : "Play";
      this.drawPanel();
    }
    this.requestRender();
  }

  // The input image with the current frame's keypoints projected into it (bottom-left panel).
  drawPanel() {
    const cv = this.ui.panelCanvas;
    if (!cv || !this.ui.panelImage || !this.ui.panelImage.complete) return;
    const ctx = cv.getContext("2d");
    const img = this.ui.panelImage;
    cv.width = img.naturalWidth;
    cv.height = img.naturalHeight;
    ctx.drawImage(img, 0, 0);
    if (!this.K) return;
    const [W] = this.imageSize;
    const sc = img.naturalWidth / W;
    const K = this.K;
    const s = this.sample;
    const t = this.frame;
    const P = this.camPoses; // display-from-camera-t (column-major); we need its inverse
    let inv = null;
    if (P) inv = new Matrix4().fromArray(P, t * 16).invert();
    const flip = new Matrix4().makeScale(1, -1, -1);
    for (let h = 0; h < 2; h++) {
      if (!this.valid[(s * this.T + t) * 2 + h]) continue;
      const base = ((s * this.T + t) * 42 + h * 21) * 3;
      const uv = [];
      for (let k = 0; k < 21; k++) {
        const p = new Vector3().fromArray(this.joints, base + 3 * k);
        p.applyMatrix4(inv || flip); // -> OpenCV coordinates of camera t
        if (p.z <= 1e-6) {
          uv.push(null);
          continue;
        }
        uv.push([(K[0][0] * (p.x / p.z) + K[0][2]) * sc, (K[1][1] * (p.y / p.z) + K[1][2]) * sc]);
      }
      const c = this.data.colors[h];
      ctx.strokeStyle = `rgb(${c[0]},${c[1]},${c[2]})`;
      ctx.fillStyle = ctx.strokeStyle;
      ctx.lineWidth = Math.max(1.5, 2.5 * sc * (W / 640));
      for (const [p, q] of this.bones) {
        if (!uv[p] || !uv[q]) continue;
        ctx.beginPath();
        ctx.moveTo(uv[p][0], uv[p][1]);
        ctx.lineTo(uv[q][0], uv[q][1]);
        ctx.stroke();
      }
      for (const u of uv) {
        if (!u) continue;
        ctx.beginPath();
        ctx.arc(u[0], u[1], ctx.lineWidth * 1.2, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  }

  requestRender() {
    this.dirty = true;
  }

  renderNow() {
    this.renderer.render(this.scene, this.camera);
    this.renderCount += 1;
    this.dirty = false;
  }

  tick(now) {
    const dt = Math.min(0.25, (now - this.lastTime) / 1000);
    this.lastTime = now;
    if (this.playing && this.T > 1) {
      this.acc += dt * this.fps * this.speed;
      if (this.acc >= 1) {
        const steps = Math.floor(this.acc);
        this.acc -= steps;
        this.frame = (this.frame + steps) % this.T;
        this.update();
      }
    }
    if (this.dirty) this.renderNow();
  }

  onResize() {
    const c = document.getElementById("hc-canvas");
    const bar = document.getElementById("hc-controls");
    c.style.bottom = bar.offsetHeight + "px";
    const panel = document.getElementById("hc-panel");
    if (panel) panel.style.bottom = bar.offsetHeight + 10 + "px";
    this.camera.aspect = c.clientWidth / c.clientHeight;
    this.camera.updateProjectionMatrix();
    this.renderer.setSize(c.clientWidth, c.clientHeight);
    this.requestRender();
  }

  // -------------------------------------------------------------------------------------------
  setFrame(t) {
    this.frame = Math.max(0, Math.min(this.T - 1, Math.round(t)));
    this.update();
    this.renderNow();
  }

  setSample(s) {
    this.sample = ((Math.round(s) % this.S) + this.S) % this.S;
    this.update();
    this.renderNow();
  }

  play() {
    this.playing = true;
    this.acc = 0;
    this.update();
  }

  pause() {
    this.playing = false;
    this.update();
  }

  buildUI() {
    const bar = document.getElementById("hc-controls");
    const ui = {};
    ui.play = el("button", { id: "hc-play", type: "button", title: "play / pause (space)" }, "Play");
    ui.play.addEventListener("click", () => (this.playing ? this.pause() : this.play()));
    ui.slider = el("input", { id: "hc-frame", type: "range", min: "0", max: String(this.T - 1), step: "1", value: "0" });
    ui.slider.addEventListener("input", () => this.setFrame(Number(ui.slider.value)));
    ui.label = el("span", { id: "hc-frame-label" });
    bar.append(ui.play, ui.slider, ui.label);
    ui.speed = el("select", { id: "hc-speed", title: "playback speed" });
    for (const v of [0.25, 0.5, 1, 2]) {
      const o = el("option", { value: String(v) }, `${v}x`);
      if (v === 1) o.selected = true;
      ui.speed.append(o);
    }
    ui.speed.addEventListener("change", () => (this.speed = Number(ui.speed.value)));
    bar.append(ui.speed);
    if (this.S > 1) {
      const lab = el("label", {}, "sample ");
      ui.sample = el("select", { id: "hc-sample", title: "forecast sample ([ and ])" });
      for (let s = 0; s < this.S; s++) ui.sample.append(el("option", { value: String(s) }, `${s + 1} / ${this.S}`));
      ui.sample.addEventListener("change", () => this.setSample(Number(ui.sample.value)));
      lab.append(ui.sample);
      bar.append(lab);
    }
    const check = (id, text, on, show = true) => {
      const lab = el("label", { class: "hc-check" });
      const box = el("input", { id, type: "checkbox" });
      box.checked = on;
      box.addEventListener("change", () => {
        if (id === "hc-show-grid") this.grid.visible = box.checked;
        if (id === "hc-show-panel" && ui.panel) ui.panel.style.display = box.checked ? "block" : "none";
        this.update();
      });
      lab.append(box, document.createTextNode(" " + text));
      if (show) bar.append(lab);
      return box;
    };
    ui.mesh = check("hc-show-mesh", "mesh", true, this.hasMesh);
    ui.skeleton = check("hc-show-skeleton", "skeleton", !this.hasMesh, this.hasMesh);
    if (!this.hasMesh) ui.skeleton.checked = true;
    ui.traj = check("hc-show-paths", "wrist paths", this.T > 1);
    ui.camera = check("hc-show-camera", "camera", true, !!this.K);
    ui.image = check("hc-show-image", "image in 3D", true, !!(this.K && this.data.image));
    ui.gridBox = check("hc-show-grid", "grid", true);
    const reset = el("button", { id: "hc-reset", type: "button" }, "Reset view");
    reset.addEventListener("click", () => this.resetView());
    bar.append(reset);
    if (this.K) {
      const cv = el("button", { id: "hc-camview", type: "button", title: "look through the input camera" }, "Camera view");
      cv.addEventListener("click", () => this.cameraView());
      bar.append(cv);
    }
    if (this.data.image) {
      ui.panelBox = check("hc-show-panel", "image panel", true);
      ui.panel = document.getElementById("hc-panel");
      ui.panel.style.display = "block";
      ui.panelCanvas = el("canvas", { id: "hc-panel-canvas" });
      ui.panel.append(ui.panelCanvas);
      ui.panelImage = new Image();
      ui.panelImage.onload = () => this.drawPanel();
      ui.panelImage.src = this.data.image;
    }
    window.addEventListener("keydown", (e) => {
      if (e.target && e.target.tagName === "INPUT" && e.target.type !== "range" && e.target.type !== "checkbox") return;
      if (e.code === "Space") {
        e.preventDefault();
        this.playing ? this.pause() : this.play();
      } else if (e.key === "ArrowRight") this.setFrame(this.frame + 1);
      else if (e.key === "ArrowLeft") this.setFrame(this.frame - 1);
      else if (e.key === "]") this.setSample(this.sample + 1);
      else if (e.key === "[") this.setSample(this.sample - 1);
    });
    this.ui = ui;
  }
}

function main() {
  let data;
  try {
    data = JSON.parse(document.getElementById("handcast-data").textContent);
  } catch (e) {
    showError("handcast viewer: the embedded data could not be read (" + e.message + ")");
    return;
  }
  if (data.format !== "handcast-viewer" || data.version !== 1) {
    showError("handcast viewer: unsupported data format " + data.format + " v" + data.version);
    return;
  }
  let viewer;
  try {
    viewer = new HandcastViewer(data);
    viewer.init();
  } catch (e) {
    showError("handcast viewer: " + e.message + " (this page needs a browser with WebGL)");
    return;
  }
  window.handcastViewer = {
    ready: true,
    numFrames: viewer.T,
    numSamples: viewer.S,
    setFrame: (t) => viewer.setFrame(t),
    setSample: (s) => viewer.setSample(s),
    play: () => viewer.play(),
    pause: () => viewer.pause(),
    resetView: () => viewer.resetView(),
    cameraView: () => viewer.cameraView(),
    state: () => ({ frame: viewer.frame, sample: viewer.sample, playing: viewer.playing, renders: viewer.renderCount }),
  };
  document.body.setAttribute("data-ready", "1");
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
else main();

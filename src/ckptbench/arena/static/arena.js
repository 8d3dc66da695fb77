"use strict";
// Pairs are fetched ahead (their images decoded) so that after a vote the next pair shows at once; the vote
// itself is sent in the background and any refusal is shown in the status line.
const QUEUE_LENGTH = 2;
const queue = [];
const inFlight = new Set();
const timings = [];
let current = null;
let myVotes = 0;
const $ = (id) => document.getElementById(id);
window.arenaTimings = timings;  // milliseconds from a vote to the next pair on screen (benchmarks read it)
window.arenaPending = () => inFlight.size;
window.arenaCurrent = () => current;

function rater() { return $("rater").value.trim() || "rater"; }

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function preload(url) {
  const image = new Image();
  image.src = url;
  return image.decode().then(() => url, () => url);
}

async function fetchPair() {
  const response = await fetch(`/api/next?rater=${encodeURIComponent(rater())}`);
  const pair = await response.json();
  if (!response.ok) throw new Error(pair.error || response.statusText);
  if (!pair.done) await Promise.all([preload(pair.left), preload(pair.right)]);
  return pair;
}

function refill() {
  while (queue.length < QUEUE_LENGTH && !(current && current.done)) queue.push(fetchPair());
}

async function showNext() {
  const next = queue.shift() || fetchPair();
  refill();
  try {
    current = await next;
  } catch (error) {
    current = null;
    status(`could not get the next pair: ${error.message}`, true);
    return;
  }
  if (current.done) {
    queue.length = 0;
    $("prompt").textContent = "";
    $("pair").hidden = true;
    status("You have judged every pair of this run. Thank you!");
    return;
  }
  if (current.votes > myVotes) myVotes = current.votes;
  $("pair").hidden = false;
  $("prompt").textContent = current.prompt;
  $("left-img").src = current.left;
  $("right-img").src = current.right;
  $("count").textContent = `${myVotes} vote${myVotes === 1 ? "" : "s"} by ${rater()}`;
}

function sendVote(token, choice) {
  const request = fetch("/api/vote", {method: "POST", headers: {"Content-Type": "application/json"},
                                      body: JSON.stringify({token, choice})})
    .then(async (response) => {
      if (!response.ok) {
        const reason = await response.json().catch(() => ({}));
        status(`vote not recorded: ${reason.error || response.statusText}`, true);
      }
    })
    .catch((error) => status(`vote not recorded: ${error.message}`, true))
    .finally(() => inFlight.delete(request));
  inFlight.add(request);
}

async function vote(choice) {
  if (!current || current.done) return;
  const started = performance.now();
  sendVote(current.token, choice);
  myVotes += 1;
  current = null;  // a second key press before the next pair is on screen does nothing
  status("");
  await showNext();
  timings.push(performance.now() - started);
}

document.addEventListener("click", (event) => {
  const target = event.target.closest("[data-choice]");
  if (target) vote(target.dataset.choice);
});

const KEYS = {ArrowLeft: "left", ArrowRight: "right", ArrowDown: "tie", " ": "both_bad"};
document.addEventListener("keydown", (event) => {
  if (event.target === $("rater") || event.repeat || !(event.key in KEYS)) return;
  event.preventDefault();
  vote(KEYS[event.key]);
});

$("rater").addEventListener("change", () => {
  localStorage.setItem("ckptbench-rater", rater());
  queue.length = 0;  // pairs already fetched were issued to the previous name
  myVotes = 0;
  showNext();
});

fetch("/api/config").then((response) => response.json()).then((config) => {
  $("rater").value = localStorage.getItem("ckptbench-rater") || config.rater;
  showNext();
});

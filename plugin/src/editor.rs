//! The egui panel: model family, size and head selectors, gain, level and CPU meters, a
//! keyboard strip of held and pedal-sustained keys, model info and status messages.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use egui::{Color32, RichText, Sense, Stroke, Vec2};
use nice_plug::context::gui::GuiContext;
use nice_plug::prelude::*;
use nice_plug_egui::{
    create_egui_editor, widgets, EguiEditor, EguiEditorState, EguiNiceSettings, Frame, NiceEguiApp,
    RepaintNotifier,
};
use parking_lot::RwLock;
use ssm_runtime::{builtin, Size, KEYS};

use crate::catalog::{Catalog, ModelSource};
use crate::params::{ModelSize, PianoParams};
use crate::shared::Shared;

const WIDTH: f32 = 600.0;
const HEIGHT: f32 = 400.0;

pub fn default_state() -> Arc<EguiEditorState> {
    EguiEditorState::from_size(nice_plug::editor::dpi::LogicalSize::new(WIDTH, HEIGHT), 1.0)
}

pub fn create(
    state: Arc<EguiEditorState>,
    params: Arc<PianoParams>,
    shared: Arc<Shared>,
    catalog: Arc<RwLock<Catalog>>,
) -> Option<EguiEditor<Panel>> {
    let settings = EguiNiceSettings {
        title: "Piano-SSM".into(),
        ..EguiNiceSettings::default()
    };
    create_egui_editor(
        state,
        RepaintNotifier::new(),
        settings,
        Panel {
            params,
            shared,
            catalog,
            gui: None,
        },
    )
}

pub struct Panel {
    params: Arc<PianoParams>,
    shared: Arc<Shared>,
    catalog: Arc<RwLock<Catalog>>,
    gui: Option<GuiContext>,
}

impl NiceEguiApp for Panel {
    fn build(
        &mut self,
        _egui_ctx: egui::Context,
        gui: GuiContext,
        _frame: &mut Frame,
    ) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        self.gui = Some(gui);
        Ok(())
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut Frame) {
        let Some(gui) = &self.gui else { return };
        let setter = gui.param_setter();
        ui.ctx().request_repaint();
        egui::Frame::new().inner_margin(12).show(ui, |ui| {
            ui.heading("Piano-SSM");
            ui.add_space(6.0);
            self.model_selectors(ui, &setter);
            let p = &self.params;
            ui.horizontal(|ui| {
                ui.label("Gain");
                ui.add(widgets::ParamSlider::for_param(&p.gain, &setter));
            });
            ui.horizontal(|ui| {
                ui.label("Tuning A4");
                ui.add(widgets::ParamSlider::for_param(&p.tune, &setter));
                ui.label("Transpose");
                ui.add(widgets::ParamSlider::for_param(&p.transpose, &setter));
            });
            ui.horizontal(|ui| {
                ui.label("Velocity curve");
                ui.add(widgets::ParamSlider::for_param(&p.velocity_curve, &setter));
                ui.label("Soft pedal");
                ui.add(widgets::ParamSlider::for_param(&p.soft_pedal, &setter));
            });
            ui.add_space(6.0);
            self.meters(ui);
            ui.add_space(6.0);
            keyboard(ui, &self.shared.held_keys(), &self.shared.sounding_keys());
            let pedals = self.shared.pedals();
            let state = |down: bool| if down { "down" } else { "up" };
            ui.label(format!(
                "pedals: soft {} · sostenuto {} · sustain {}",
                state(pedals.soft),
                state(pedals.sostenuto),
                state(pedals.sustain)
            ));
            ui.add_space(6.0);
            self.model_info(ui);
            self.status(ui);
        });
    }
}

impl Panel {
    fn model_selectors(&self, ui: &mut egui::Ui, setter: &ParamSetter) {
        let catalog = self.catalog.read();
        let family = self.params.family.value() as usize;
        ui.horizontal(|ui| {
            ui.label("Family");
            let name = catalog
                .family_name(family)
                .unwrap_or("(no model)")
                .to_string();
            egui::ComboBox::from_id_salt("family")
                .selected_text(name)
                .width(220.0)
                .show_ui(ui, |ui| {
                    for (i, f) in catalog.families.iter().enumerate() {
                        if ui.selectable_label(i == family, &f.name).clicked() {
                            setter.begin_set_parameter(&self.params.family);
                            setter.set_parameter(&self.params.family, i as i32);
                            setter.end_set_parameter(&self.params.family);
                        }
                    }
                });
            ui.label("Size");
            for (i, size) in [ModelSize::S, ModelSize::L, ModelSize::Xl]
                .into_iter()
                .enumerate()
            {
                if ui
                    .selectable_label(self.params.size.value() == size, Size::ALL[i].label())
                    .clicked()
                {
                    setter.begin_set_parameter(&self.params.size);
                    setter.set_parameter(&self.params.size, size);
                    setter.end_set_parameter(&self.params.size);
                }
            }
        });
        if let Some(name) = self.params.saved_family.missing() {
            ui.label(
                RichText::new(format!(
                    "This project's family \"{name}\" is not in the model folder: the \
                     built-in family plays until it is back (choosing a family forgets it)"
                ))
                .color(Color32::from_rgb(220, 160, 60)),
            );
        }
        let entry = catalog.find(family, self.params.size.value().index());
        let heads = entry.map(|e| e.heads.clone()).unwrap_or_default();
        let kind = entry
            .and_then(|e| e.head_kind.clone())
            .unwrap_or_else(|| "head".into());
        ui.horizontal(|ui| {
            ui.label(if kind == "year" {
                "MAESTRO year"
            } else {
                "Head"
            });
            let head = self.params.head.value() as usize;
            let current = heads
                .get(head.min(heads.len().saturating_sub(1)))
                .cloned()
                .unwrap_or_else(|| "-".into());
            egui::ComboBox::from_id_salt("head")
                .selected_text(current)
                .show_ui(ui, |ui| {
                    for (i, label) in heads.iter().enumerate() {
                        if ui.selectable_label(i == head, label).clicked() {
                            setter.begin_set_parameter(&self.params.head);
                            setter.set_parameter(&self.params.head, i as i32);
                            setter.end_set_parameter(&self.params.head);
                        }
                    }
                });
        });
    }

    fn meters(&self, ui: &mut egui::Ui) {
        let peak_db = util::gain_to_db(self.shared.peak().max(1e-9));
        let load = self.shared.cpu_load();
        ui.horizontal(|ui| {
            ui.label("Level");
            let text = if peak_db > -90.0 {
                format!("{peak_db:.1} dBFS")
            } else {
                "-inf dBFS".into()
            };
            ui.add(
                egui::ProgressBar::new(((peak_db + 60.0) / 60.0).clamp(0.0, 1.0))
                    .desired_width(200.0)
                    .text(text),
            );
            ui.label(format!("CPU {:.1} % of the block", load * 100.0));
        });
    }

    fn model_info(&self, ui: &mut egui::Ui) {
        let catalog = self.catalog.read();
        let family = self.shared.playing_family.load(Ordering::Relaxed);
        let size = self.shared.playing_size.load(Ordering::Relaxed) as usize;
        let text = match family
            .checked_sub(1)
            .and_then(|f| catalog.find(f as usize, size).map(|e| (f, e)))
        {
            Some((f, e)) => format!(
                "Playing {} {}: {} parameters, trained at {} Hz, {} heads",
                catalog.family_name(f as usize).unwrap_or("?"),
                e.size,
                e.parameter_count,
                e.train_rate,
                e.heads.len()
            ),
            None => "No model playing".into(),
        };
        ui.label(text);
        let builtin = family
            .checked_sub(1)
            .and_then(|f| catalog.find(f as usize, size))
            .is_some_and(|e| matches!(e.source, ModelSource::Builtin(_)));
        if builtin {
            ui.label(RichText::new(format!("Piano-SSM Grand: {}", builtin::CREDIT)).small());
        }
    }

    fn status(&self, ui: &mut egui::Ui) {
        let status = self.shared.status();
        if !status.message.is_empty() {
            let color = if status.is_error {
                Color32::from_rgb(220, 80, 60)
            } else {
                Color32::GRAY
            };
            ui.label(RichText::new(status.message).color(color));
        }
        let bad = self.shared.non_finite_blocks.load(Ordering::Relaxed);
        if bad > 0 {
            ui.label(
                RichText::new(format!(
                    "{bad} blocks silenced: the model produced NaN or infinity and was reset"
                ))
                .color(Color32::from_rgb(220, 80, 60)),
            );
        }
    }
}

/// 52 white and 36 black keys; held keys dark blue, keys sustained by the pedal light blue.
fn keyboard(ui: &mut egui::Ui, held: &[bool; KEYS], sounding: &[bool; KEYS]) {
    let width = ui.available_width().min(WIDTH - 24.0);
    let (rect, _) = ui.allocate_exact_size(Vec2::new(width, 60.0), Sense::hover());
    let painter = ui.painter_at(rect);
    let is_black = |k: usize| matches!((k + 9) % 12, 1 | 3 | 6 | 8 | 10);
    let white_w = rect.width() / 52.0;
    let color = |k: usize, base: Color32| {
        if held[k] {
            Color32::from_rgb(40, 90, 200)
        } else if sounding[k] {
            Color32::from_rgb(140, 180, 240)
        } else {
            base
        }
    };
    let mut x = rect.left();
    let mut white_x = [0.0f32; KEYS];
    for (k, left) in white_x.iter_mut().enumerate() {
        if !is_black(k) {
            let r = egui::Rect::from_min_size(
                egui::pos2(x, rect.top()),
                Vec2::new(white_w, rect.height()),
            );
            painter.rect_filled(r, 1.0, color(k, Color32::WHITE));
            painter.rect_stroke(
                r,
                1.0,
                Stroke::new(1.0, Color32::DARK_GRAY),
                egui::StrokeKind::Inside,
            );
            *left = x;
            x += white_w;
        }
    }
    for k in 0..KEYS {
        if is_black(k) {
            let left = white_x[k - 1] + white_w * 0.65;
            let r = egui::Rect::from_min_size(
                egui::pos2(left, rect.top()),
                Vec2::new(white_w * 0.7, rect.height() * 0.6),
            );
            painter.rect_filled(r, 1.0, color(k, Color32::BLACK));
        }
    }
}
